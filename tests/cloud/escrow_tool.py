"""Drives moto's Secrets Manager the way an operator or an attacker would, for tests/escrow_*.rs:
`get NAME` prints {"tags", "body", "version"} (or {"absent": true}); `put NAME BODY` writes a new
version; `create NAME BODY STACK` creates a secret tagged agentkeys:stack=STACK; `delete NAME`
schedules it for deletion; `iam-user NAME POLICY` creates an IAM user with that inline policy and
prints its access key as {"id", "secret"}. The endpoint is the first argument."""
import json
import sys

import boto3

endpoint, command, name = sys.argv[1], sys.argv[2], sys.argv[3]
keys = dict(aws_access_key_id="test", aws_secret_access_key="test")
client = boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1", **keys)
if command == "get":
    try:
        described = client.describe_secret(SecretId=name)
    except client.exceptions.ResourceNotFoundException:
        print(json.dumps({"absent": True}))
        sys.exit(0)
    value = client.get_secret_value(SecretId=name)
    print(json.dumps({"tags": described.get("Tags", []), "body": value.get("SecretString"),
                      "version": value["VersionId"], "kms": described.get("KmsKeyId")}))
elif command == "put":
    print(client.put_secret_value(SecretId=name, SecretString=sys.argv[4])["VersionId"])
elif command == "create":
    client.create_secret(Name=name, SecretString=sys.argv[4],
                         Tags=[{"Key": "agentkeys:stack", "Value": sys.argv[5]}])
elif command == "iam-user":
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", **keys)
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="escrow", PolicyDocument=sys.argv[4])
    key = iam.create_access_key(UserName=name)["AccessKey"]
    print(json.dumps({"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))
elif command == "delete":
    client.delete_secret(SecretId=name, RecoveryWindowInDays=7)
else:
    sys.exit(f"unknown command {command}")
