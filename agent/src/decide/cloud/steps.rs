//! What CloudFormation cannot do, as exact commands printed after a render: activating the
//! account's receipt rule set, deploying, associating the instance profile with an existing
//! instance, waiting for DKIM, auditing a role made outside the stack, phase two, teardown — and
//! the resources an existing stack's import change set adopts.

use serde_json::{Value, json};

use super::{CLASSES, StackInputs, id};
use crate::decide::naming::{ACCOUNT_STACK, RECEIPT_RULE_SET};

/// Policies the old tooling attached to host roles by hand; none belongs on the host role.
pub(crate) const OVERBROAD: [&str; 3] = ["AmazonS3FullAccess", "AmazonSESFullAccess", "AdministratorAccess"];

/// The account stack's steps.
pub(crate) fn account(region: &str) -> Vec<String> {
    vec![
        format!(
            "aws cloudformation deploy --region {region} --stack-name {ACCOUNT_STACK} --template-file agentkeys-account.json --capabilities CAPABILITY_NAMED_IAM [--parameter-overrides CiPrincipalArn=<the role CI runs as>]"
        ),
        format!("aws ses set-active-receipt-rule-set --region {region} --rule-set-name {RECEIPT_RULE_SET}"),
    ]
}

/// One stack's steps, in order.
pub(crate) fn stack(inputs: &StackInputs) -> Vec<String> {
    let id_ = &inputs.identity;
    let (stack, region) = (id_.cloud_stack(), &inputs.region);
    let file = format!("{stack}.json");
    let mut overrides = Vec::new();
    if inputs.hosted_zone_id.is_none() {
        overrides.push("HostedZoneId=<zone id of ".to_owned() + &id_.zone + ">");
    }
    if inputs.instance_id.is_none() {
        overrides.push("InstanceId=<i-… of the broker host>".to_owned());
    }
    let params =
        if overrides.is_empty() { String::new() } else { format!(" --parameter-overrides {}", overrides.join(" ")) };
    let deploy = format!(
        "aws cloudformation deploy --region {region} --stack-name {stack} --template-file {file} --capabilities CAPABILITY_NAMED_IAM{params}"
    );
    let instance = inputs.instance_id.clone().unwrap_or_else(|| "<i-… of the broker host>".into());
    let role = id_.host_role();
    let mut out = vec![
        "# once per account, before the first stack: agentkeys-hostd cloud render --account (see its steps)".to_owned(),
        deploy,
        format!(
            "aws ec2 associate-iam-instance-profile --region {region} --instance-id {instance} --iam-instance-profile Name={role}"
        ),
        format!(
            "aws ec2 create-tags --region {region} --resources {instance} --tags Key=agentkeys:stack,Value={stack}   # the periodic reconcile and CI target this tag"
        ),
        format!(
            "aws sesv2 get-email-identity --region {region} --email-identity {} --query DkimAttributes.Status   # repeat until SUCCESS",
            id_.mail_domain()
        ),
        format!("aws iam list-attached-role-policies --role-name {role}   # only AmazonSSMManagedInstanceCore belongs"),
    ];
    for policy in OVERBROAD {
        out.push(format!(
            "aws iam detach-role-policy --role-name {role} --policy-arn arn:aws:iam::aws:policy/{policy}   # if listed"
        ));
    }
    let (secret, alias) = (id_.escrow_secret(), id_.escrow_kms_alias());
    if let Some(replica) = &inputs.escrow_replica_region {
        out.insert(
            1,
            format!(
                "# the escrow's replica in {replica} needs the escrow key there first (skip on a stack's first deploy: render without --escrow-replica-region, deploy, then): aws kms replicate-key --region {region} --key-id {alias} --replica-region {replica} --query ReplicaKeyMetadata.KeyId --output text | xargs -I KEY aws kms create-alias --region {replica} --alias-name {alias} --target-key-id KEY"
            ),
        );
    }
    out.push(format!(
        "aws secretsmanager describe-secret --region {region} --secret-id {secret} --query '[KmsKeyId,Tags]'   # the escrow: the stack's key, its tag; hostd fills it on the host's first run"
    ));
    out.push(
        "# on the host: agentkeys-hostd reconcile (certificates), then agentkeys-hostd oidc prints the thumbprint"
            .to_owned(),
    );
    out.push(format!(
        "aws cloudformation deploy --region {region} --stack-name {stack} --template-file {file} --capabilities CAPABILITY_NAMED_IAM --parameter-overrides OidcThumbprint=<40 hex from agentkeys-hostd oidc>"
    ));
    out.push(format!(
        "# teardown of this stack only (its receipt rule goes; the rule set and its activation stay for the other stacks; the escrow secret and its key are kept — delete them by hand, with a recovery window, only when the stack's wallets are abandoned): aws cloudformation delete-stack --region {region} --stack-name {stack}"
    ));
    out
}

/// The import list for an existing stack's resources (`--adopt`): what a `create-change-set
/// --change-set-type IMPORT --resources-to-import file://…` takes. Resources without an
/// identifier of their own (records, associations, policies) are created by the first update;
/// an adopted Elastic IP stays outside the stack (the `EipAllocationId` parameter).
pub(crate) fn import_list(inputs: &StackInputs) -> Value {
    let id_ = &inputs.identity;
    let a = &inputs.account_id;
    let mut list = vec![
        json!({ "ResourceType": "AWS::SES::EmailIdentity", "LogicalResourceId": id::MAIL_IDENTITY,
                "ResourceIdentifier": { "EmailIdentity": id_.mail_domain() } }),
        json!({ "ResourceType": "AWS::S3::Bucket", "LogicalResourceId": id::MAIL_BUCKET,
                "ResourceIdentifier": { "BucketName": id_.bucket("mail", a) } }),
        json!({ "ResourceType": "AWS::IAM::Role", "LogicalResourceId": id::DATA_ROLE,
                "ResourceIdentifier": { "RoleName": id_.role_name("data") } }),
        json!({ "ResourceType": "AWS::IAM::Role", "LogicalResourceId": id::HOST_ROLE,
                "ResourceIdentifier": { "RoleName": id_.host_role() } }),
        json!({ "ResourceType": "AWS::IAM::InstanceProfile", "LogicalResourceId": id::INSTANCE_PROFILE,
                "ResourceIdentifier": { "InstanceProfileName": id_.host_role() } }),
    ];
    for (class, _) in CLASSES {
        list.push(json!({ "ResourceType": "AWS::S3::Bucket", "LogicalResourceId": id::class(class, "Bucket"),
                          "ResourceIdentifier": { "BucketName": id_.bucket(class, a) } }));
    }
    Value::Array(list)
}
