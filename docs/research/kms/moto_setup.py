import boto3, base64, os, json
kms = boto3.client("kms", endpoint_url="http://127.0.0.1:15000", region_name="us-east-1",
                   aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
k = kms.create_key(Description="keyward kek", KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT")
kid = k["KeyMetadata"]["KeyId"]; print("KeyId", kid, "Arn", k["KeyMetadata"]["Arn"])
kms.create_alias(AliasName="alias/keyward-kek", TargetKeyId=kid)
pt = os.urandom(32)
ct = kms.encrypt(KeyId="alias/keyward-kek", Plaintext=pt, EncryptionContext={"kid": "k1"})
print("Encrypt resp keys:", {x: (len(v) if isinstance(v, bytes) else v) for x, v in ct.items() if x != "ResponseMetadata"})
blob = ct["CiphertextBlob"]
d = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"kid": "k1"})
print("decrypt ok:", d["Plaintext"] == pt, d["KeyId"])
try:
    kms.decrypt(CiphertextBlob=blob, EncryptionContext={"kid": "k2"})
    print("WRONG CONTEXT ACCEPTED")
except Exception as e:
    print("wrong context ->", type(e).__name__, e)
k2 = kms.create_key(Description="second")["KeyMetadata"]["KeyId"]
r = kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"kid": "k1"}, DestinationKeyId=k2, DestinationEncryptionContext={"kid": "k1"})
print("ReEncrypt:", {x: (len(v) if isinstance(v, bytes) else v) for x, v in r.items() if x != "ResponseMetadata"})
json.dump({"kid": kid, "kid2": k2, "pt": base64.b64encode(pt).decode(), "blob": base64.b64encode(blob).decode()}, open("moto-vals.json", "w"))
