"""Deploy a rendered stack template to a moto server on loopback with boto3, then read back
what was created through moto's APIs; print one JSON object for tests/cloud_render.rs.

moto's CloudFormation creates only part of the types (not SES identities, receipt rules, bucket
policies, EIP associations, OIDC providers, KMS aliases, secrets or a secret's resource policy) and ignores a bucket's lifecycle and public-access
blocks there. So: the supported resources go through CloudFormation (create, then an update with
a changed template), and the template's own property values for the rest are applied through the
direct APIs moto implements, then read back. Usage: moto_deploy.py ENDPOINT TEMPLATE STACK
"""

import copy
import json
import sys

import boto3

UNSUPPORTED = {
    "AWS::SES::EmailIdentity",
    "AWS::SES::ReceiptRule",
    "AWS::S3::BucketPolicy",
    "AWS::EC2::EIPAssociation",
    "AWS::IAM::OIDCProvider",
    "AWS::SecretsManager::ResourcePolicy",
    "AWS::KMS::Alias",
    "AWS::SecretsManager::Secret",
}


def refs(value):
    """Every resource a value refers to (Ref, GetAtt)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref" and isinstance(v, str):
                yield v
            elif k == "Fn::GetAtt":
                yield v[0]
            else:
                yield from refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from refs(v)


def choose(value, conditions):
    """Resolve every Fn::If as CloudFormation would with these condition values."""
    if isinstance(value, dict):
        if "Fn::If" in value:
            name, yes, no = value["Fn::If"]
            return choose(yes if conditions[name] else no, conditions)
        return {k: choose(v, conditions) for k, v in value.items()}
    if isinstance(value, list):
        return [choose(v, conditions) for v in value]
    return value


# Phase one, allocating the address: what an operator's first deploy evaluates to.
PHASE_ONE = {"Federated": False, "AllocateEip": True}


def for_moto(template, drop=()):
    """Phase one without the types moto's CloudFormation skips (and what refers to them)."""
    t = copy.deepcopy(template)
    t["Resources"] = {k: choose(v, PHASE_ONE) for k, v in t["Resources"].items()
                      if PHASE_ONE.get(v.get("Condition"), True)}
    t["Outputs"] = choose(t.get("Outputs", {}), PHASE_ONE)
    t.pop("Conditions", None)
    res = t["Resources"]
    for v in res.values():
        v.pop("Condition", None)
        if v["Type"] == "AWS::KMS::Key":
            # moto's CloudFormation reads a key's tags with the KMS API's names (TagKey), not
            # CloudFormation's (Key): the tags are checked in the template tests instead. And it
            # keeps a key policy given as an object as it is, then fails to parse it: a string.
            v["Properties"].pop("Tags", None)
            v["Properties"]["KeyPolicy"] = json.dumps(v["Properties"]["KeyPolicy"])
    gone = {k for k, v in res.items() if v["Type"] in UNSUPPORTED or k in drop}
    changed = True
    while changed:
        changed = False
        for k, v in list(res.items()):
            deps = v.get("DependsOn", [])
            deps = [deps] if isinstance(deps, str) else deps
            if k not in gone and (set(refs(v)) | set(deps)) & gone:
                gone.add(k)
                changed = True
    for k in gone:
        res.pop(k, None)
    t["Outputs"] = {k: v for k, v in t.get("Outputs", {}).items() if not set(refs(v)) & gone}
    return t


def main():
    endpoint, template_path, stack = sys.argv[1:4]
    template = json.load(open(template_path))
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    cfn, s3, iam = boto3.client("cloudformation", **kw), boto3.client("s3", **kw), boto3.client("iam", **kw)
    ec2, r53 = boto3.client("ec2", **kw), boto3.client("route53", **kw)
    ses, sesv2 = boto3.client("ses", **kw), boto3.client("sesv2", **kw)
    res = template["Resources"]

    zone_name = template["Parameters"]["HostedZoneId"]["Description"].rsplit(" ", 1)[-1]
    zone = r53.create_hosted_zone(Name=zone_name, CallerReference=stack)["HostedZone"]["Id"].split("/")[-1]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    params = [
        {"ParameterKey": "HostedZoneId", "ParameterValue": zone},
        {"ParameterKey": "InstanceId", "ParameterValue": instance},
    ]

    # Create without the channel class bucket, then update with the whole template: a changed
    # template (a class added by a newer hostd) deploys as an update.
    first = for_moto(template, drop={"ChannelBucket"})
    cfn.create_stack(StackName=stack, TemplateBody=json.dumps(first), Parameters=params,
                     Capabilities=["CAPABILITY_NAMED_IAM"])
    status = [cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]]
    cfn.update_stack(StackName=stack, TemplateBody=json.dumps(for_moto(template)), Parameters=params,
                     Capabilities=["CAPABILITY_NAMED_IAM"])
    status.append(cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"])
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                for r in cfn.describe_stack_resources(StackName=stack)["StackResources"]}

    out = {"status": status, "created": sorted(physical), "skipped": sorted(set(res) - set(for_moto(template)["Resources"]))}
    out["buckets"] = sorted(b["Name"] for b in s3.list_buckets()["Buckets"])
    roles = {}
    for r in iam.list_roles()["Roles"]:
        roles[r["RoleName"]] = {
            "trust": r["AssumeRolePolicyDocument"],
            "inline": sorted(iam.list_role_policies(RoleName=r["RoleName"])["PolicyNames"]),
            "managed": sorted(p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=r["RoleName"])["AttachedPolicies"]),
        }
    out["roles"] = roles
    out["instance_profiles"] = {p["InstanceProfileName"]: [r["RoleName"] for r in p["Roles"]]
                                for p in iam.list_instance_profiles()["InstanceProfiles"]}
    addresses = ec2.describe_addresses()["Addresses"]
    out["eip_tags"] = [{t["Key"]: t["Value"] for t in a.get("Tags", [])} for a in addresses]
    records = r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    out["records"] = sorted([r["Name"].rstrip("."), r["Type"], [v["Value"] for v in r.get("ResourceRecords", [])]]
                            for r in records if r["Type"] not in ("NS", "SOA"))

    # The skipped parts, with the template's own values, through the direct APIs.
    mail = res["MailBucket"]["Properties"]
    rules = [{"ID": x["Id"], "Status": x["Status"], "Filter": {"Prefix": x["Prefix"]},
              "Expiration": {"Days": x["ExpirationInDays"]}} for x in mail["LifecycleConfiguration"]["Rules"]]
    s3.put_bucket_lifecycle_configuration(Bucket=mail["BucketName"], LifecycleConfiguration={"Rules": rules})
    s3.put_public_access_block(Bucket=mail["BucketName"],
                               PublicAccessBlockConfiguration=mail["PublicAccessBlockConfiguration"])
    out["mail_lifecycle"] = s3.get_bucket_lifecycle_configuration(Bucket=mail["BucketName"])["Rules"]
    out["mail_public_access_block"] = s3.get_public_access_block(Bucket=mail["BucketName"])["PublicAccessBlockConfiguration"]
    policy = json.loads(json.dumps(res["MailBucketPolicy"]["Properties"]["PolicyDocument"]))
    data_arn = iam.get_role(RoleName=res["DataRole"]["Properties"]["RoleName"])["Role"]["Arn"]
    policy["Statement"][1]["Principal"]["AWS"] = data_arn
    s3.put_bucket_policy(Bucket=mail["BucketName"], Policy=json.dumps(policy))
    out["mail_policy"] = json.loads(s3.get_bucket_policy(Bucket=mail["BucketName"])["Policy"])

    identity = res["MailIdentity"]["Properties"]
    sesv2.create_email_identity(EmailIdentity=identity["EmailIdentity"],
                                DkimSigningAttributes=identity["DkimSigningAttributes"])
    out["email_identity"] = sesv2.get_email_identity(EmailIdentity=identity["EmailIdentity"])["IdentityType"]
    rule = copy.deepcopy(res["InboundRule"]["Properties"])
    rule["Rule"]["Actions"][0]["S3Action"]["BucketName"] = mail["BucketName"]
    ses.create_receipt_rule_set(RuleSetName=rule["RuleSetName"])
    ses.create_receipt_rule(RuleSetName=rule["RuleSetName"], Rule=rule["Rule"])
    out["receipt_rule"] = ses.describe_receipt_rule(RuleSetName=rule["RuleSetName"], RuleName=rule["Rule"]["Name"])["Rule"]

    allocation = next((a["AllocationId"] for a in addresses), None)
    if allocation:
        ec2.associate_address(AllocationId=allocation, InstanceId=instance)
        out["eip_instance"] = ec2.describe_addresses(AllocationIds=[allocation])["Addresses"][0].get("InstanceId") == instance

    # The escrow: the secret (its key by alias, its tag, the empty marker), the key's policy.
    kms, sm = boto3.client("kms", **kw), boto3.client("secretsmanager", **kw)
    secret = res["EscrowSecret"]["Properties"]
    key = kms.describe_key(KeyId=physical["EscrowKey"])["KeyMetadata"]
    alias = res["EscrowKeyAlias"]["Properties"]
    kms.create_alias(AliasName=alias["AliasName"], TargetKeyId=key["KeyId"])
    sm.create_secret(Name=secret["Name"], Description=secret["Description"], KmsKeyId=alias["AliasName"],
                     SecretString=secret["SecretString"], Tags=secret["Tags"])
    described = sm.describe_secret(SecretId=secret["Name"])
    aliases = [a["AliasName"] for a in kms.list_aliases(KeyId=key["KeyId"])["Aliases"]]
    out["escrow"] = {
        "name": described["Name"],
        "tags": {t["Key"]: t["Value"] for t in described.get("Tags", [])},
        "value": sm.get_secret_value(SecretId=secret["Name"])["SecretString"],
        "key_aliases": aliases,
        "kms_key_id": described["KmsKeyId"],
        "key_policy": json.loads(kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"]),
        "key_rotation": kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"],
    }
    policy = res["EscrowSecretPolicy"]["Properties"]
    sm.put_resource_policy(SecretId=secret["Name"], ResourcePolicy=json.dumps(policy["ResourcePolicy"]),
                           BlockPublicPolicy=policy["BlockPublicPolicy"])
    out["escrow"]["resource_policy"] = json.loads(sm.get_resource_policy(SecretId=secret["Name"])["ResourcePolicy"])

    provider = res["BrokerOidcProvider"]["Properties"]
    arn = iam.create_open_id_connect_provider(Url=provider["Url"], ClientIDList=provider["ClientIdList"],
                                              ThumbprintList=["0" * 40])["OpenIDConnectProviderArn"]
    got = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    out["oidc_provider"] = {"url": got["Url"], "clients": got["ClientIDList"]}
    json.dump(out, sys.stdout, sort_keys=True, default=str)
    print()


if __name__ == "__main__":
    main()
