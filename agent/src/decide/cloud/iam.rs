//! The stack's IAM roles and bucket policies. Role and bucket names come from the naming code;
//! ARNs are built from them (never from `GetAtt` across roles, so no role waits on another and a
//! policy never names a principal created later — the old mail-bucket-policy defect).

use serde_json::{Value, json};

use super::{FEDERATED, StackInputs, att, id, r};

const PARTITION: &str = "arn:aws";

fn doc(statements: Value) -> Value {
    json!({ "Version": "2012-10-17", "Statement": statements })
}

fn bucket_arn(bucket: &str) -> String {
    format!("{PARTITION}:s3:::{bucket}")
}

fn ses_identities(inputs: &StackInputs) -> Value {
    let mail = inputs.identity.mail_domain();
    let base = format!("{PARTITION}:ses:{}:{}:identity", inputs.region, inputs.account_id);
    json!([format!("{base}/{mail}"), format!("{base}/*@{mail}")])
}

/// The broker's provider as a principal (`Ref` of the provider is its ARN).
fn provider_trust(inputs: &StackInputs, extra: Value) -> Value {
    let host = inputs.identity.broker_host();
    let mut condition = json!({ "StringEquals": { format!("{host}:aud"): "sts.amazonaws.com" } });
    if let (Some(c), Some(e)) = (condition.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    doc(json!([{
        "Effect": "Allow",
        "Principal": { "Federated": r(id::OIDC_PROVIDER) },
        "Action": ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"],
        "Condition": condition,
    }]))
}

/// The host role: EC2 may assume it; it may assume the data role, send from the stack's mail
/// domain and keep its own stack's escrow (never delete it); SSM manages the instance. Nothing broader.
pub(super) fn host_role(inputs: &StackInputs) -> Value {
    let id_ = &inputs.identity;
    let data_role = id_.role_arn("data", &inputs.account_id);
    json!({
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": id_.host_role(),
            "Description": format!("The {} broker host (instance profile {})", id_.stack, id_.host_role()),
            "AssumeRolePolicyDocument": doc(json!([{
                "Effect": "Allow",
                "Principal": { "Service": "ec2.amazonaws.com" },
                "Action": "sts:AssumeRole",
            }])),
            "ManagedPolicyArns": [format!("{PARTITION}:iam::aws:policy/AmazonSSMManagedInstanceCore")],
            "Policies": [{
                "PolicyName": "broker-host",
                "PolicyDocument": doc(Value::Array(
                    [
                        json!({ "Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"], "Resource": data_role }),
                        json!({ "Effect": "Allow", "Action": ["ses:SendEmail", "ses:SendRawEmail"], "Resource": ses_identities(inputs) }),
                    ]
                    .into_iter()
                    .chain(super::escrow::host_role_statements(inputs))
                    .collect(),
                )),
            }],
        }
    })
}

/// The data role: reads the mail bucket, sends from the stack's mail domain. Phase one trusts
/// the host role; phase two trusts only the broker's OIDC provider.
pub(super) fn data_role(inputs: &StackInputs) -> Value {
    let id_ = &inputs.identity;
    let mail_bucket = id_.bucket("mail", &inputs.account_id);
    let host_role = format!("{PARTITION}:iam::{}:role/{}", inputs.account_id, id_.host_role());
    let phase_one = doc(json!([{
        "Effect": "Allow",
        "Principal": { "AWS": host_role },
        "Action": ["sts:AssumeRole", "sts:TagSession"],
    }]));
    json!({
        "Type": "AWS::IAM::Role",
        "DependsOn": id::HOST_ROLE,
        "Properties": {
            "RoleName": id_.role_name("data"),
            "Description": format!("AgentKeys data plane of {} (mail, SES)", id_.stack),
            "AssumeRolePolicyDocument": { "Fn::If": [FEDERATED, provider_trust(inputs, json!({})), phase_one] },
            "Policies": [{
                "PolicyName": "data",
                "PolicyDocument": doc(json!([
                    { "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn(&mail_bucket) },
                    { "Effect": "Allow", "Action": "s3:GetObject", "Resource": format!("{}/*", bucket_arn(&mail_bucket)) },
                    {
                        "Effect": "Allow",
                        "Action": ["ses:SendEmail", "ses:SendRawEmail", "ses:GetEmailIdentity"],
                        "Resource": ses_identities(inputs),
                    },
                ])),
            }],
        }
    })
}

/// SES may write inbound mail for this account only; the data role may read it.
pub(super) fn mail_bucket_policy(inputs: &StackInputs) -> Value {
    let bucket = inputs.identity.bucket("mail", &inputs.account_id);
    json!({
        "Type": "AWS::S3::BucketPolicy",
        "Properties": {
            "Bucket": r(id::MAIL_BUCKET),
            "PolicyDocument": doc(json!([
                {
                    "Sid": "SesDeliversInboundMail",
                    "Effect": "Allow",
                    "Principal": { "Service": "ses.amazonaws.com" },
                    "Action": "s3:PutObject",
                    "Resource": format!("{}/*", bucket_arn(&bucket)),
                    "Condition": { "StringEquals": { "aws:Referer": inputs.account_id } },
                },
                {
                    "Sid": "DataRoleReadsMail",
                    "Effect": "Allow",
                    "Principal": { "AWS": att(id::DATA_ROLE, "Arn") },
                    "Action": ["s3:GetObject", "s3:ListBucket"],
                    "Resource": [bucket_arn(&bucket), format!("{}/*", bucket_arn(&bucket))],
                },
            ])),
        }
    })
}

fn tagged_prefix(prefix: &str) -> String {
    format!("bots/${{aws:PrincipalTag/agentkeys_actor_omni}}/{prefix}")
}

/// The two statements of a class's access, for a role's policy (`principal` `None`) or the
/// bucket's (`Some`): list only with the actor's prefix, objects only under it.
fn class_access(bucket: &str, prefix: &str, principal: Option<&Value>) -> Value {
    let under = tagged_prefix(prefix);
    let mut list = json!({
        "Sid": "ListOwnPrefix",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": bucket,
        "Condition": {
            "StringLike": { "s3:prefix": [format!("{under}/*")] },
            "Null": { "aws:PrincipalTag/agentkeys_actor_omni": "false" },
        },
    });
    let mut objects = json!({
        "Sid": "ObjectsUnderOwnPrefix",
        "Effect": "Allow",
        "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
        "Resource": format!("{bucket}/{under}/*"),
    });
    if let Some(p) = principal {
        list["Principal"] = json!({ "AWS": p });
        objects["Principal"] = json!({ "AWS": p });
    }
    json!([list, objects])
}

/// Phase two: a class role, federated on the broker's provider with a required actor tag, that
/// lists and reads/writes only under its actor's prefix.
pub(super) fn class_role(inputs: &StackInputs, class: &str, prefix: &str) -> Value {
    let id_ = &inputs.identity;
    let bucket = bucket_arn(&id_.bucket(class, &inputs.account_id));
    let actor_tag = json!({ "Null": { "aws:RequestTag/agentkeys_actor_omni": "false" } });
    json!({
        "Type": "AWS::IAM::Role",
        "Condition": FEDERATED,
        "Properties": {
            "RoleName": id_.role_name(class),
            "Description": format!("AgentKeys {class} data of {} (per actor)", id_.stack),
            "AssumeRolePolicyDocument": provider_trust(inputs, actor_tag),
            "Policies": [{
                "PolicyName": class,
                "PolicyDocument": doc(class_access(&bucket, prefix, None)),
            }],
        }
    })
}

/// Phase two: the class bucket admits its class role, and only under the actor's prefix.
pub(super) fn class_bucket_policy(inputs: &StackInputs, class: &str, prefix: &str) -> Value {
    let id_ = &inputs.identity;
    let bucket = bucket_arn(&id_.bucket(class, &inputs.account_id));
    let role = att(&id::class(class, "Role"), "Arn");
    json!({
        "Type": "AWS::S3::BucketPolicy",
        "Condition": FEDERATED,
        "Properties": {
            "Bucket": r(&id::class(class, "Bucket")),
            "PolicyDocument": doc(class_access(&bucket, prefix, Some(&role))),
        }
    })
}
