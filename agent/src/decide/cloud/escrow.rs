//! The stack's escrow on the cloud side: a customer-managed KMS key (multi-Region, so a replica
//! can be added later without replacing it) that only the stack's host role may use, and only
//! through Secrets Manager for this stack's secret; its alias; the secret itself (its name from
//! the naming code, tagged with the stack, an empty escrow marker as its first value); a resource
//! policy that refuses any deletion without a 30-day recovery window; optionally a replica in a
//! second Region. All kept when the stack is deleted or a resource replaced.

use serde_json::{Value, json};

use super::{StackInputs, id, r, retained, tags};
use crate::decide::escrow::{Items, encode};

/// Days Secrets Manager keeps a deleted secret (and KMS a deleted key) recoverable.
pub(crate) const RECOVERY_DAYS: u32 = 30;

/// The ARN pattern of the stack's secret (Secrets Manager appends `-` and six random characters).
pub(crate) fn secret_arn_pattern(inputs: &StackInputs) -> String {
    format!(
        "arn:aws:secretsmanager:{}:{}:secret:{}-??????",
        inputs.region,
        inputs.account_id,
        inputs.identity.escrow_secret()
    )
}

fn host_role_arn(inputs: &StackInputs) -> String {
    format!("arn:aws:iam::{}:role/{}", inputs.account_id, inputs.identity.host_role())
}

/// The key, its alias, the secret and the secret's resource policy: logical id → resource.
pub(crate) fn resources(inputs: &StackInputs) -> Vec<(&'static str, Value)> {
    let id_ = &inputs.identity;
    let via = format!("secretsmanager.{}.amazonaws.com", inputs.region);
    let key_policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministersTheKeyButCannotUseIt",
                "Effect": "Allow",
                "Principal": { "AWS": format!("arn:aws:iam::{}:root", inputs.account_id) },
                "Action": [
                    "kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
                    "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource",
                    "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:ReplicateKey",
                ],
                "Resource": "*",
            },
            {
                "Sid": "HostRoleUsesItThroughSecretsManagerForItsOwnSecret",
                "Effect": "Allow",
                "Principal": { "AWS": host_role_arn(inputs) },
                "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:DescribeKey"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": { "kms:ViaService": via, "kms:CallerAccount": inputs.account_id },
                    "StringLike": { "kms:EncryptionContext:SecretARN": secret_arn_pattern(inputs) },
                },
            },
        ],
    });
    let mut key = retained(json!({
        "Type": "AWS::KMS::Key",
        "DependsOn": id::HOST_ROLE,
        "Properties": {
            "Description": format!("AgentKeys escrow of {}: encrypts {}", id_.cloud_stack(), id_.escrow_secret()),
            "EnableKeyRotation": true,
            "MultiRegion": true,
            "PendingWindowInDays": RECOVERY_DAYS,
            "KeyPolicy": key_policy,
            "Tags": tags(id_, &id_.escrow_kms_alias()),
        }
    }));
    key["UpdateReplacePolicy"] = json!("Retain");
    let alias = retained(json!({
        "Type": "AWS::KMS::Alias",
        "Properties": { "AliasName": id_.escrow_kms_alias(), "TargetKeyId": r(id::ESCROW_KEY) }
    }));
    let mut secret_props = json!({
        "Name": id_.escrow_secret(),
        "Description": format!(
            "AgentKeys escrow of {}: the secrets a replacement broker host restores (written by agentkeys-hostd)",
            id_.cloud_stack()
        ),
        "KmsKeyId": r(id::ESCROW_KEY),
        // An empty escrow: hostd fills it on the host's first run. The value never changes in the
        // template, so no stack update overwrites what hostd wrote.
        "SecretString": encode(id_, &Items::default()),
        "Tags": tags(id_, &id_.escrow_secret()),
    });
    if let Some(region) = &inputs.escrow_replica_region {
        secret_props["ReplicaRegions"] = json!([{ "Region": region, "KmsKeyId": id_.escrow_kms_alias() }]);
    }
    let secret = retained(json!({ "Type": "AWS::SecretsManager::Secret", "Properties": secret_props }));
    let policy = json!({
        "Type": "AWS::SecretsManager::ResourcePolicy",
        "Properties": {
            "SecretId": r(id::ESCROW_SECRET),
            "BlockPublicPolicy": true,
            "ResourcePolicy": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "NoDeletionWithoutRecovery",
                        "Effect": "Deny",
                        "Principal": { "AWS": "*" },
                        "Action": "secretsmanager:DeleteSecret",
                        "Resource": "*",
                        "Condition": { "Bool": { "secretsmanager:ForceDeleteWithoutRecovery": "true" } },
                    },
                    {
                        "Sid": "NoShortRecoveryWindow",
                        "Effect": "Deny",
                        "Principal": { "AWS": "*" },
                        "Action": "secretsmanager:DeleteSecret",
                        "Resource": "*",
                        "Condition": { "NumericLessThan": { "secretsmanager:RecoveryWindowInDays": RECOVERY_DAYS } },
                    },
                ],
            },
        }
    });
    vec![(id::ESCROW_KEY, key), (id::ESCROW_ALIAS, alias), (id::ESCROW_SECRET, secret), (id::ESCROW_POLICY, policy)]
}

/// The host role's statements on the escrow: read, create (tagged with its own stack only) and
/// put values of its own stack's secret; never delete one.
pub(crate) fn host_role_statements(inputs: &StackInputs) -> Vec<Value> {
    let secret = secret_arn_pattern(inputs);
    vec![
        json!({
            "Sid": "EscrowReadAndWriteItsOwnSecret",
            "Effect": "Allow",
            "Action": ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"],
            "Resource": secret,
        }),
        json!({
            "Sid": "EscrowCreateItsOwnSecretTaggedWithItsStack",
            "Effect": "Allow",
            "Action": ["secretsmanager:CreateSecret", "secretsmanager:TagResource"],
            "Resource": secret_arn_pattern(inputs),
            "Condition": { "StringEquals": { "aws:RequestTag/agentkeys:stack": inputs.identity.cloud_stack() } },
        }),
        json!({
            "Sid": "EscrowIsNeverDeletedByTheHost",
            "Effect": "Deny",
            "Action": ["secretsmanager:DeleteSecret", "secretsmanager:RemoveRegionsFromReplication"],
            "Resource": "*",
        }),
    ]
}
