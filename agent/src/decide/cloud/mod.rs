//! The cloud side of a stack as AWS CloudFormation, rendered from the same naming code as the
//! host (so host and cloud names cannot disagree); CloudFormation does the provisioning, the
//! change sets, the rollback and the teardown. Phase one (no OIDC thumbprint yet) creates what
//! the host needs to boot; phase two (`OidcThumbprint` set) adds the broker's OIDC provider,
//! the per-class federated roles and their bucket policies, and switches the data role's trust
//! to the provider. What CloudFormation cannot do is in [`steps`].

mod escrow;
mod iam;
pub(crate) mod steps;

use serde_json::{Value, json};

use crate::decide::naming::{ACCOUNT_STACK, Identity, RECEIPT_RULE_SET};

/// The per-class buckets and roles of phase two: class → the key prefix its data lives under.
pub(crate) const CLASSES: [(&str, &str); 4] =
    [("vault", "credentials"), ("memory", "memory"), ("config", "config"), ("channel", "channel")];

/// What one stack's template is rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StackInputs {
    pub identity: Identity,
    pub account_id: String,
    pub region: String,
    /// Defaults of the template's parameters (an operator can still override them at deploy).
    pub hosted_zone_id: Option<String>,
    pub instance_id: Option<String>,
    /// An Elastic IP to adopt (its allocation id and address) instead of allocating one.
    pub eip: Option<(String, String)>,
    /// Phase two: the SHA-1 thumbprint `agentkeys-hostd oidc` prints.
    pub oidc_thumbprint: Option<String>,
    /// A second Region holding a replica of the escrow (regional disaster recovery).
    pub escrow_replica_region: Option<String>,
}

/// Check the flags a template is rendered with; `Err((flag, why))`.
pub(crate) fn check_inputs(i: &StackInputs) -> Result<(), (&'static str, String)> {
    let is = |s: &str, prefix: &str, hex: bool, len: std::ops::RangeInclusive<usize>| {
        s.strip_prefix(prefix).is_some_and(|rest| {
            len.contains(&rest.len())
                && rest.bytes().all(|b| {
                    if hex {
                        b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
                    } else {
                        b.is_ascii_uppercase() || b.is_ascii_digit()
                    }
                })
        })
    };
    if let Some(z) = &i.hosted_zone_id
        && !is(z, "Z", false, 1..=32)
    {
        return Err((
            "--hosted-zone-id",
            format!("{z:?} is not a Route 53 hosted zone id (Z followed by capitals and digits)"),
        ));
    }
    if let Some(x) = &i.instance_id
        && !is(x, "i-", true, 8..=17)
    {
        return Err(("--instance-id", format!("{x:?} is not an EC2 instance id (i- followed by 8 or 17 hex digits)")));
    }
    if let Some((alloc, addr)) = &i.eip {
        if !is(alloc, "eipalloc-", true, 8..=17) {
            return Err(("--eip-allocation-id", format!("{alloc:?} is not an allocation id (eipalloc-…)")));
        }
        if addr.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(("--eip-address", format!("{addr:?} is not an IPv4 address")));
        }
    }
    if let Some(rr) = &i.escrow_replica_region {
        let source = crate::decide::error::Source::Flag("--escrow-replica-region".into());
        let ok = crate::decide::validate::region(&source, rr).is_ok();
        if !ok || *rr == i.region {
            return Err((
                "--escrow-replica-region",
                format!("{rr:?} is not an AWS region other than the stack's own ({})", i.region),
            ));
        }
    }
    if let Some(t) = &i.oidc_thumbprint
        && !is(t, "", true, 40..=40)
    {
        return Err((
            "--oidc-thumbprint",
            format!(
                "{t:?} is not a SHA-1 thumbprint (40 lowercase hex digits, as agentkeys-hostd oidc prints; IAM refuses 64)"
            ),
        ));
    }
    Ok(())
}

/// Logical ids of the resources (stable: a rename would replace the resource).
pub(crate) mod id {
    pub(crate) const MAIL_IDENTITY: &str = "MailIdentity";
    pub(crate) const MAIL_BUCKET: &str = "MailBucket";
    pub(crate) const MAIL_BUCKET_POLICY: &str = "MailBucketPolicy";
    pub(crate) const RECEIPT_RULE: &str = "InboundRule";
    pub(crate) const DATA_ROLE: &str = "DataRole";
    pub(crate) const HOST_ROLE: &str = "HostRole";
    pub(crate) const INSTANCE_PROFILE: &str = "HostInstanceProfile";
    pub(crate) const EIP: &str = "BrokerEip";
    pub(crate) const EIP_ASSOCIATION: &str = "BrokerEipAssociation";
    pub(crate) const OIDC_PROVIDER: &str = "BrokerOidcProvider";
    pub(crate) const RULE_SET: &str = "ReceiptRuleSet";
    pub(crate) const ESCROW_KEY: &str = "EscrowKey";
    pub(crate) const ESCROW_ALIAS: &str = "EscrowKeyAlias";
    pub(crate) const ESCROW_SECRET: &str = "EscrowSecret";
    pub(crate) const ESCROW_POLICY: &str = "EscrowSecretPolicy";

    /// `vault` → `VaultBucket`.
    pub(crate) fn class(class: &str, kind: &str) -> String {
        let mut c = class.chars();
        let first = c.next().map(|f| f.to_ascii_uppercase().to_string()).unwrap_or_default();
        format!("{first}{}{kind}", c.as_str())
    }
}

const FEDERATED: &str = "Federated";
const ALLOCATE_EIP: &str = "AllocateEip";

fn r(name: &str) -> Value {
    json!({ "Ref": name })
}

fn att(resource: &str, attribute: &str) -> Value {
    json!({ "Fn::GetAtt": [resource, attribute] })
}

/// A resource an import change set may adopt: CloudFormation requires an explicit policy.
fn deleted_with_stack(mut resource: Value) -> Value {
    resource["DeletionPolicy"] = json!("Delete");
    resource
}

fn tags(identity: &Identity, name: &str) -> Value {
    json!([
        { "Key": "Name", "Value": name },
        { "Key": "agentkeys:stack", "Value": identity.cloud_stack() },
    ])
}

/// A resource whose loss loses data or an address: kept when the stack is deleted or the
/// resource replaced.
fn retained(mut resource: Value) -> Value {
    resource["DeletionPolicy"] = json!("Retain");
    resource["UpdateReplacePolicy"] = json!("Retain");
    resource
}

fn bucket(identity: &Identity, name: &str, lifecycle: Option<Value>) -> Value {
    let mut props = json!({
        "BucketName": name,
        "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": true,
            "BlockPublicPolicy": true,
            "IgnorePublicAcls": true,
            "RestrictPublicBuckets": true,
        },
        "BucketEncryption": {
            "ServerSideEncryptionConfiguration": [
                { "ServerSideEncryptionByDefault": { "SSEAlgorithm": "AES256" } }
            ]
        },
        "OwnershipControls": { "Rules": [{ "ObjectOwnership": "BucketOwnerEnforced" }] },
        "Tags": tags(identity, name),
    });
    if let Some(l) = lifecycle {
        props["LifecycleConfiguration"] = l;
    }
    retained(json!({ "Type": "AWS::S3::Bucket", "Properties": props }))
}

fn record(zone_param: &str, name: &str, kind: &str, values: Value) -> Value {
    json!({
        "Type": "AWS::Route53::RecordSet",
        "Properties": {
            "HostedZoneId": r(zone_param),
            "Name": name,
            "Type": kind,
            "TTL": "300",
            "ResourceRecords": values,
        }
    })
}

/// CamelCase logical id for a host name (`broker-test-7.example.org` → `ARecordBrokerTest7`).
fn host_id(host: &str, zone: &str) -> String {
    let label = host.strip_suffix(zone).unwrap_or(host).trim_end_matches('.');
    let mut out = String::from("ARecord");
    for part in label.split(['-', '.']) {
        let mut c = part.chars();
        if let Some(f) = c.next() {
            out.push(f.to_ascii_uppercase());
            out.push_str(c.as_str());
        }
    }
    out
}

fn parameters(inputs: &StackInputs) -> Value {
    let default = |v: &Option<String>| v.clone().map_or(json!({}), |d| json!({ "Default": d }));
    let merge = |mut base: Value, extra: Value| {
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        base
    };
    let (alloc, addr) = inputs.eip.clone().unzip();
    json!({
        "HostedZoneId": merge(json!({
            "Type": "AWS::Route53::HostedZone::Id",
            "Description": format!("The Route 53 hosted zone of {}", inputs.identity.zone),
        }), default(&inputs.hosted_zone_id)),
        "InstanceId": merge(json!({
            "Type": "AWS::EC2::Instance::Id",
            "Description": "The broker host's EC2 instance",
        }), default(&inputs.instance_id)),
        "EipAllocationId": {
            "Type": "String",
            "Default": alloc.unwrap_or_default(),
            "AllowedPattern": "^(eipalloc-[0-9a-f]+)?$",
            "Description": "Adopt this Elastic IP (with EipAddress) instead of allocating one; empty: allocate",
        },
        "EipAddress": {
            "Type": "String",
            "Default": addr.unwrap_or_default(),
            "AllowedPattern": "^([0-9]{1,3}(\\.[0-9]{1,3}){3})?$",
            "Description": "The adopted Elastic IP's address (with EipAllocationId)",
        },
        "OidcThumbprint": {
            "Type": "String",
            "Default": inputs.oidc_thumbprint.clone().unwrap_or_default(),
            "AllowedPattern": "^([0-9a-f]{40})?$",
            "Description": "Phase two: the SHA-1 thumbprint `agentkeys-hostd oidc` prints; empty: phase one",
        },
    })
}

/// One stack's template (deterministic: the JSON object keys are sorted).
pub(crate) fn stack_template(inputs: &StackInputs) -> Value {
    let id_ = &inputs.identity;
    let (a, region) = (&inputs.account_id, &inputs.region);
    let mail = id_.mail_domain();
    let mail_bucket = id_.bucket("mail", a);
    let mut res = serde_json::Map::new();
    let mut put = |k: &str, v: Value| {
        res.insert(k.to_owned(), v);
    };

    put(
        id::MAIL_IDENTITY,
        deleted_with_stack(json!({
            "Type": "AWS::SES::EmailIdentity",
            "Properties": {
                "EmailIdentity": mail,
                "DkimSigningAttributes": { "NextSigningKeyLength": "RSA_2048_BIT" },
            }
        })),
    );
    for n in 1..=3 {
        let value = att(id::MAIL_IDENTITY, &format!("DkimDNSTokenValue{n}"));
        let mut dkim = record("HostedZoneId", "", "CNAME", json!([value]));
        dkim["Properties"]["Name"] = att(id::MAIL_IDENTITY, &format!("DkimDNSTokenName{n}"));
        put(&format!("DkimRecord{n}"), dkim);
    }
    put("MxRecord", record("HostedZoneId", &mail, "MX", json!([format!("10 inbound-smtp.{region}.amazonaws.com")])));
    put("SpfRecord", record("HostedZoneId", &mail, "TXT", json!(["\"v=spf1 include:amazonses.com -all\""])));
    put(
        "DmarcRecord",
        record(
            "HostedZoneId",
            &id_.dmarc_name(),
            "TXT",
            json!([format!("\"v=DMARC1; p=quarantine; rua=mailto:dmarc@{mail}\"")]),
        ),
    );
    let address = json!({ "Fn::If": [ALLOCATE_EIP, r(id::EIP), r("EipAddress")] });
    for host in id_.dns_hosts() {
        put(&host_id(&host, &id_.zone), record("HostedZoneId", &host, "A", json!([address.clone()])));
    }
    let mut eip = retained(json!({
        "Type": "AWS::EC2::EIP",
        "Properties": { "Domain": "vpc", "Tags": tags(id_, &id_.eip_name()) },
    }));
    eip["Condition"] = json!(ALLOCATE_EIP);
    put(id::EIP, eip);
    put(
        id::EIP_ASSOCIATION,
        json!({
            "Type": "AWS::EC2::EIPAssociation",
            "Properties": {
                "AllocationId": { "Fn::If": [ALLOCATE_EIP, att(id::EIP, "AllocationId"), r("EipAllocationId")] },
                "InstanceId": r("InstanceId"),
            }
        }),
    );

    let lifecycle = json!({
        "Rules": [{ "Id": "expire-inbound", "Status": "Enabled", "Prefix": "inbound/", "ExpirationInDays": 30 }]
    });
    put(id::MAIL_BUCKET, bucket(id_, &mail_bucket, Some(lifecycle)));
    put(id::MAIL_BUCKET_POLICY, iam::mail_bucket_policy(inputs));
    put(
        id::RECEIPT_RULE,
        json!({
            "Type": "AWS::SES::ReceiptRule",
            "DependsOn": id::MAIL_BUCKET_POLICY,
            "Properties": {
                "RuleSetName": RECEIPT_RULE_SET,
                "Rule": {
                    "Name": id_.receipt_rule(),
                    "Enabled": true,
                    "ScanEnabled": true,
                    "TlsPolicy": "Optional",
                    "Recipients": [mail],
                    "Actions": [{ "S3Action": { "BucketName": r(id::MAIL_BUCKET), "ObjectKeyPrefix": "inbound/" } }],
                }
            }
        }),
    );
    for (class, _) in CLASSES {
        put(&id::class(class, "Bucket"), bucket(id_, &id_.bucket(class, a), None));
    }
    put(id::DATA_ROLE, deleted_with_stack(iam::data_role(inputs)));
    put(id::HOST_ROLE, deleted_with_stack(iam::host_role(inputs)));
    put(
        id::INSTANCE_PROFILE,
        deleted_with_stack(json!({
            "Type": "AWS::IAM::InstanceProfile",
            "Properties": { "InstanceProfileName": id_.host_role(), "Roles": [r(id::HOST_ROLE)] }
        })),
    );

    for (logical, resource) in escrow::resources(inputs) {
        put(logical, resource);
    }

    // Phase two.
    let mut provider = retained(json!({
        "Type": "AWS::IAM::OIDCProvider",
        "Properties": {
            "Url": id_.issuer(),
            "ClientIdList": ["sts.amazonaws.com"],
            "ThumbprintList": [r("OidcThumbprint")],
        }
    }));
    provider["Condition"] = json!(FEDERATED);
    put(id::OIDC_PROVIDER, provider);
    for (class, prefix) in CLASSES {
        put(&id::class(class, "Role"), iam::class_role(inputs, class, prefix));
        put(&id::class(class, "BucketPolicy"), iam::class_bucket_policy(inputs, class, prefix));
    }

    let outputs = json!({
        "BrokerAddress": { "Description": "The broker host's public IPv4", "Value": address },
        "HostRoleArn": { "Value": att(id::HOST_ROLE, "Arn") },
        "InstanceProfileName": { "Value": r(id::INSTANCE_PROFILE) },
        "DataRoleArn": { "Value": att(id::DATA_ROLE, "Arn") },
        "MailBucket": { "Value": r(id::MAIL_BUCKET) },
        "EscrowSecretArn": { "Value": r(id::ESCROW_SECRET) },
        "EscrowKeyArn": { "Value": att(id::ESCROW_KEY, "Arn") },
    });
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!(
            "AgentKeys {} ({}) in {}: rendered by agentkeys-hostd cloud render; deploy as stack {}",
            id_.stack, id_.issuer(), a, id_.cloud_stack()
        ),
        "Parameters": parameters(inputs),
        "Conditions": {
            FEDERATED: { "Fn::Not": [{ "Fn::Equals": [r("OidcThumbprint"), ""] }] },
            ALLOCATE_EIP: { "Fn::Equals": [r("EipAllocationId"), ""] },
        },
        "Resources": Value::Object(res),
        "Outputs": outputs,
    })
}

/// The SSM Command document hostd ships (`packaging/ssm/`), as the account stack names it.
pub(crate) const RECONCILE_DOCUMENT: &str = "agentkeys-hostd-reconcile";
/// The role CI deploys through: it may send only hostd's document, only to AgentKeys hosts.
pub(crate) const CI_DEPLOY_ROLE: &str = "agentkeys-ci-deploy";

/// The once-per-account template: the receipt rule set every stack's rule lives in (kept when the
/// stack is deleted: deleting it would stop every stack's inbound mail), hostd's SSM document, a
/// State Manager association that runs a flagless `reconcile` on every AgentKeys host twice an hour
/// (compliance reported; at most a quarter of the hosts at once, stopping after 2 errors), and the
/// CI deploy role that may send only that document, only to instances tagged with a stack.
pub(crate) fn account_template() -> Value {
    let document = include_str!("../../../../packaging/ssm/agentkeys-hostd-reconcile.json");
    let content: Value = serde_json::from_str(document).unwrap_or_default();
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!(
            "AgentKeys account resources: rendered by agentkeys-hostd cloud render --account; deploy as stack {ACCOUNT_STACK}"
        ),
        "Parameters": {
            "CiPrincipalArn": {
                "Type": "String",
                "Default": "",
                "AllowedPattern": "^(|arn:aws:iam::[0-9]{12}:(role|user)/[A-Za-z0-9+=,.@_/-]+)$",
                "Description": "The principal CI runs as (e.g. its OIDC-federated role); empty: no CI deploy role",
            }
        },
        "Conditions": { "HasCi": { "Fn::Not": [{ "Fn::Equals": [r("CiPrincipalArn"), ""] }] } },
        "Resources": {
            id::RULE_SET: retained(json!({
                "Type": "AWS::SES::ReceiptRuleSet",
                "Properties": { "RuleSetName": RECEIPT_RULE_SET },
            })),
            "ReconcileDocument": {
                "Type": "AWS::SSM::Document",
                "Properties": {
                    "Name": RECONCILE_DOCUMENT,
                    "DocumentType": "Command",
                    "DocumentFormat": "JSON",
                    "UpdateMethod": "NewVersion",
                    "Content": content,
                }
            },
            "PeriodicReconcile": {
                "Type": "AWS::SSM::Association",
                "Properties": {
                    "AssociationName": "agentkeys-hostd-periodic-reconcile",
                    "Name": r("ReconcileDocument"),
                    "ScheduleExpression": "rate(30 minutes)",
                    "Targets": [{ "Key": "tag-key", "Values": ["agentkeys:stack"] }],
                    "Parameters": { "acme": ["on"] },
                    "ComplianceSeverity": "HIGH",
                    "MaxConcurrency": "25%",
                    "MaxErrors": "2",
                    "ApplyOnlyAtCronInterval": false,
                }
            },
            "CiDeployRole": {
                "Type": "AWS::IAM::Role",
                "Condition": "HasCi",
                "Properties": {
                    "RoleName": CI_DEPLOY_ROLE,
                    "Description": "CI deploys AgentKeys hosts: hostd's SSM document only, AgentKeys instances only",
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [{ "Effect": "Allow", "Principal": { "AWS": r("CiPrincipalArn") }, "Action": "sts:AssumeRole" }],
                    },
                    "Policies": [{
                        "PolicyName": "send-hostd-document",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Effect": "Allow",
                                    "Action": "ssm:SendCommand",
                                    "Resource": { "Fn::Sub": format!("arn:${{AWS::Partition}}:ssm:${{AWS::Region}}:${{AWS::AccountId}}:document/{RECONCILE_DOCUMENT}") },
                                },
                                {
                                    "Effect": "Allow",
                                    "Action": "ssm:SendCommand",
                                    "Resource": { "Fn::Sub": "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*" },
                                    "Condition": { "Null": { "ssm:resourceTag/agentkeys:stack": "false" } },
                                },
                                {
                                    "Effect": "Allow",
                                    "Action": ["ssm:GetCommandInvocation", "ssm:ListCommandInvocations", "ssm:ListCommands"],
                                    "Resource": "*",
                                },
                            ],
                        },
                    }],
                }
            },
        },
        "Outputs": { "ReceiptRuleSet": { "Value": r(id::RULE_SET) }, "ReconcileDocument": { "Value": r("ReconcileDocument") } },
    })
}

#[cfg(test)]
mod tests;
