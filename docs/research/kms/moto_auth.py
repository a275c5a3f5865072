"""Turn on moto's IAM auth (SigV4 verification + IAM policy) and probe it."""
import json, os, sys, base64, urllib.request
import boto3, botocore
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

EP = "http://127.0.0.1:15000"
boot = dict(endpoint_url=EP, region_name="us-east-1", aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
# Allow N unauthenticated setup calls, then everything is verified.
r = urllib.request.urlopen(urllib.request.Request(EP + "/moto-api/reset-auth", data=b"6", method="POST", headers={"Content-Type": "text/plain"}))
print("reset-auth:", r.read().decode())
iam = boto3.client("iam", **boot)
iam.create_user(UserName="keyward")                                                    # 1
pol = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:DescribeKey", "sts:GetSessionToken"], "Resource": "*"}]}
iam.put_user_policy(UserName="keyward", PolicyName="kek", PolicyDocument=json.dumps(pol))  # 2
ak = iam.create_access_key(UserName="keyward")["AccessKey"]                             # 3
kms_boot = boto3.client("kms", **boot)
kid = kms_boot.create_key(Description="authed kek")["KeyMetadata"]["KeyId"]             # 4
iam.create_user(UserName="nobody")                                                      # 5
ak2 = iam.create_access_key(UserName="nobody")["AccessKey"]                             # 6
json.dump({"ak": ak["AccessKeyId"], "sk": ak["SecretAccessKey"], "kid": kid, "ak2": ak2["AccessKeyId"], "sk2": ak2["SecretAccessKey"]}, open("moto-auth.json", "w"))
print("access key", ak["AccessKeyId"], "kid", kid)

def kms(ak_id, sk, token=None):
    return boto3.client("kms", endpoint_url=EP, region_name="us-east-1", aws_access_key_id=ak_id, aws_secret_access_key=sk, aws_session_token=token)
def tryit(label, f):
    try:
        out = f(); print(label, "-> OK", {k: v for k, v in out.items() if k not in ("ResponseMetadata", "Plaintext", "CiphertextBlob")})
    except botocore.exceptions.ClientError as e:
        print(label, "->", e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"])

pt = os.urandom(32)
good = kms(ak["AccessKeyId"], ak["SecretAccessKey"])
tryit("valid creds encrypt", lambda: good.encrypt(KeyId=kid, Plaintext=pt))
tryit("wrong secret", lambda: kms(ak["AccessKeyId"], "x" * 40).encrypt(KeyId=kid, Plaintext=pt))
tryit("unknown access key", lambda: kms("AKIAUNKNOWNUNKNOWN00", "x" * 40).encrypt(KeyId=kid, Plaintext=pt))
tryit("no kms permission", lambda: kms(ak2["AccessKeyId"], ak2["SecretAccessKey"]).encrypt(KeyId=kid, Plaintext=pt))
sts = boto3.client("sts", endpoint_url=EP, region_name="us-east-1", aws_access_key_id=ak["AccessKeyId"], aws_secret_access_key=ak["SecretAccessKey"])
try:
    c = sts.get_session_token()["Credentials"]
    tryit("session token creds", lambda: kms(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]).encrypt(KeyId=kid, Plaintext=pt))
    tryit("session creds without token", lambda: kms(c["AccessKeyId"], c["SecretAccessKey"]).encrypt(KeyId=kid, Plaintext=pt))
except botocore.exceptions.ClientError as e:
    print("sts ->", e.response["Error"])
