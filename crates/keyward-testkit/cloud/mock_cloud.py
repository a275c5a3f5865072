#!/usr/bin/env python3
"""A mock of the clouds' LLM APIs and their token endpoints, for the gateway's tests, checking
each request the way the real service does with an implementation that is not Keyward's:

- Google's token endpoint: the JWT bearer grant's assertion is verified with google-auth
  against the service account's public key; short-lived `ya29.mock-N` tokens are issued.
- Vertex AI: generateContent / streamGenerateContent (SSE) / the publisher's model list /
  a project's models, each wanting a live token the token endpoint issued.
- Entra ID: the client credentials grant (tenant, client id, secret, scope); `entra.mock-N`.
- Azure OpenAI: chat completions and the model list, wanting an Entra token and no api-key.
- Bedrock: Converse, ConverseStream, InvokeModel, InvokeModelWithResponseStream and the
  foundation-model list, each SigV4 signature verified with botocore's own signer; streams
  in AWS event-stream framing, a frame at a time.

Usage: mock_cloud.py CONFIG.json. Prints the port on its first line. GET /_log gives what it
saw (the test's assertions); every request that fails a check is answered as the real
service would (401/403 and its error shape) and logged with why.
"""
import base64, binascii, datetime, hmac, http.server, json, socketserver, struct, sys, threading, time, urllib.parse

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from google.auth import jwt as gjwt

CONFIG = json.load(open(sys.argv[1]))
LOCK = threading.Lock()
LOG = []
TOKENS = {}  # token -> expiry (epoch seconds)
COUNTER = [0]


def issue(prefix):
    with LOCK:
        COUNTER[0] += 1
        token = f"{prefix}-{COUNTER[0]}"
        TOKENS[token] = time.time() + CONFIG["token_lifetime"]
    return token


def live(auth, prefix):
    if not auth.startswith("Bearer "):
        return False
    token = auth[len("Bearer "):]
    with LOCK:
        return token.startswith(prefix) and TOKENS.get(token, 0) > time.time()


def frame(headers, payload):
    hb = b"".join(bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode()
                  for k, v in headers.items())
    pre = struct.pack(">II", 12 + len(hb) + len(payload) + 4, len(hb))
    pre += struct.pack(">I", binascii.crc32(pre))
    msg = pre + hb + payload
    return msg + struct.pack(">I", binascii.crc32(msg))


def event(kind, body):
    return frame({":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
                 json.dumps(body).encode())


def sigv4_ok(method, raw_path, headers, body):
    """Whether the request's SigV4 signature is the one botocore computes, and why not."""
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return False, "no SigV4 authorization"
    f = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    ak, date, region, service, term = f["Credential"].split("/")
    signed = f["SignedHeaders"].split(";")
    amz_date = headers.get("x-amz-date", "")
    aws = next((k for k in CONFIG["aws"]["keys"] if k["access_key_id"] == ak), None)
    if aws is None:
        return False, f"unknown access key {ak}"
    if (region, service, term) != (CONFIG["aws"]["region"], "bedrock", "aws4_request"):
        return False, f"wrong scope {ak}/{region}/{service}"
    if date != amz_date[:8] or not {"host", "x-amz-date"} <= set(signed):
        return False, "date or signed headers"
    when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    if abs(time.time() - when.timestamp()) > 300:
        return False, "stale signature"
    if not all(h in signed for h in headers if h.startswith("x-amz-")):
        return False, "an x-amz- header is not signed"
    token = aws.get("session_token")
    if token and headers.get("x-amz-security-token") != token:
        return False, "no session token"
    req = AWSRequest(method=method, url="http://" + headers["host"] + raw_path,
                     headers={h: headers[h] for h in signed}, data=body)
    req.context["timestamp"] = amz_date
    s = SigV4Auth(Credentials(aws["access_key_id"], aws["secret"], token), "bedrock", region)
    want = s.signature(s.string_to_sign(req, s.canonical_request(req)), req)
    return hmac.compare_digest(want, f["Signature"]), "signature mismatch"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def note(self, kind, ok, why=""):
        headers = {k.lower(): v for k, v in self.headers.items()}
        with LOCK:
            LOG.append({"kind": kind, "method": self.command, "path": self.path, "ok": ok,
                        "why": why, "headers": headers})

    def reply(self, status, body, headers=None):
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        for k, v in (headers or {"content-type": "application/json"}).items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def stream(self, content_type, chunks, pause=0.05):
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for c in chunks:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
            self.wfile.flush()
            time.sleep(pause)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def body(self):
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        self.route(b"")

    def do_POST(self):
        self.route(self.body())

    def route(self, body):
        path = urllib.parse.urlsplit(self.path).path
        h = {k.lower(): v for k, v in self.headers.items()}
        if path == "/_log":
            with LOCK:
                return self.reply(200, LOG)
        if path == "/google/token":
            return self.google_token(body)
        if path.startswith("/entra/"):
            return self.entra_token(path, body)
        if "/publishers/" in path or path.startswith("/v1/projects/"):
            return self.vertex(path, h)
        if path.startswith("/openai/"):
            return self.azure(path, h)
        if path.startswith("/model/") or path == "/foundation-models":
            return self.bedrock(path, h, body)
        self.note("unknown", False, "no such route")
        self.reply(404, {"error": "not found"})

    def google_token(self, body):
        form = urllib.parse.parse_qs(body.decode())
        try:
            assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
            claims = gjwt.decode(form["assertion"][0], certs=CONFIG["sa_public_pem"],
                                 audience="https://oauth2.googleapis.com/token")
            assert claims["iss"] == CONFIG["sa_email"], "iss"
            assert "cloud-platform" in claims["scope"], "scope"
            assert claims["exp"] - claims["iat"] <= 3600, "lifetime"
        except Exception as e:  # the real endpoint's answer to a bad assertion
            self.note("google_token", False, repr(e))
            return self.reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        self.note("google_token", True)
        self.reply(200, {"access_token": issue("ya29.mock"), "expires_in": CONFIG["token_lifetime"],
                         "token_type": "Bearer"})

    def entra_token(self, path, body):
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        e = CONFIG["entra"]
        ok = (path == f"/entra/{e['tenant']}/oauth2/v2.0/token"
              and form.get("grant_type") == "client_credentials"
              and form.get("client_id") == e["client_id"]
              and hmac.compare_digest(form.get("client_secret", ""), e["secret"])
              and form.get("scope") == "https://cognitiveservices.azure.com/.default")
        self.note("entra_token", ok)
        if not ok:
            return self.reply(401, {"error": "invalid_client",
                                    "error_description": "AADSTS7000215: Invalid client secret provided."})
        self.reply(200, {"token_type": "Bearer", "expires_in": CONFIG["token_lifetime"],
                         "ext_expires_in": CONFIG["token_lifetime"], "access_token": issue("entra.mock")})

    def vertex(self, path, h):
        if not live(h.get("authorization", ""), "ya29.mock") or "x-goog-api-key" in h:
            self.note("vertex", False, "no live access token")
            return self.reply(401, {"error": {"code": 401, "status": "UNAUTHENTICATED",
                                              "message": "Request had invalid authentication credentials."}})
        if path == "/v1beta1/publishers/google/models":
            self.note("vertex", True)
            return self.reply(200, {"publisherModels": [{"name": "publishers/google/models/gemini-2.0-flash"},
                                                        {"name": "publishers/google/models/gemini-2.5-pro"}]})
        if path.startswith("/v1/projects/") and path.endswith("/models"):
            self.note("vertex", path == f"/v1/projects/{CONFIG['project']}/locations/{CONFIG['location']}/models")
            return self.reply(200, {})
        if "/models/echo:" in path:  # a provider quoting what it was sent
            self.note("vertex", True, "echo")
            return self.reply(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                              "message": "bad request from " + h["authorization"]}})
        want = f"/v1beta1/projects/{CONFIG['project']}/locations/{CONFIG['location']}/publishers/google/models/"
        if not path.startswith(want):
            self.note("vertex", False, "another project or location")
            return self.reply(403, {"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "denied"}})
        self.note("vertex", True)
        answer = lambda text: {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                                               "finishReason": "STOP"}],
                               "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2,
                                                 "totalTokenCount": 5}, "modelVersion": "gemini-2.0-flash"}
        if path.endswith(":streamGenerateContent"):
            parts = [answer("Hello"), answer(" from Vertex")]
            return self.stream("text/event-stream", [b"data: " + json.dumps(p).encode() + b"\r\n\r\n" for p in parts])
        self.reply(200, answer("Hello from Vertex"))

    def azure(self, path, h):
        ok = live(h.get("authorization", ""), "entra.mock") and "api-key" not in h
        self.note("azure", ok, "" if ok else "no live Entra token, or an api-key")
        if not ok:
            return self.reply(401, {"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint."}})
        if path == "/openai/models":
            return self.reply(200, {"data": [{"id": "gpt-4o"}, {"id": "gpt-4o-mini"}]})
        if "/deployments/echo/" in path:
            return self.reply(400, {"error": {"code": "400", "message": "you sent " + h["authorization"]}},
                              {"content-type": "application/json", "x-echo": h["authorization"]})
        self.reply(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": "Hello from Azure"}}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}})

    def bedrock(self, path, h, body):
        if h.get("authorization", "").startswith("Bearer "):  # a Bedrock API key
            ok = h["authorization"][len("Bearer "):] in CONFIG["aws"]["api_keys"]
            why = "not a Bedrock API key"
        else:
            ok, why = sigv4_ok(self.command, self.path, h, body)
        self.note("bedrock", ok, "" if ok else why)
        if not ok:
            return self.reply(403, {"message": "The request signature we calculated does not match the signature you provided."},
                              {"content-type": "application/json", "x-amzn-errortype": "InvalidSignatureException"})
        if path == "/foundation-models":
            return self.reply(200, {"modelSummaries": [{"modelId": "anthropic.claude-3-haiku-20240307-v1:0"},
                                                       {"modelId": "amazon.titan-text-express-v1"}]})
        if path.startswith("/model/echo/"):
            return self.reply(400, {"message": "token " + h.get("x-amz-security-token", "")},
                              {"content-type": "application/json", "x-amzn-errortype": "ValidationException"})
        op = path.rsplit("/", 1)[1]
        usage = {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}
        if op == "converse":
            return self.reply(200, {"output": {"message": {"role": "assistant", "content": [{"text": "Hello from Bedrock"}]}},
                                    "stopReason": "end_turn", "usage": usage, "metrics": {"latencyMs": 5}})
        if op == "converse-stream":
            frames = [event("messageStart", {"role": "assistant"}),
                      event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}}),
                      event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " from Bedrock"}}),
                      event("contentBlockStop", {"contentBlockIndex": 0}),
                      event("messageStop", {"stopReason": "end_turn"}),
                      event("metadata", {"usage": usage, "metrics": {"latencyMs": 5}})]
            return self.stream("application/vnd.amazon.eventstream", frames)
        model = {"content": [{"type": "text", "text": "Hello from Claude on Bedrock"}],
                 "usage": {"input_tokens": 3, "output_tokens": 2}}
        if op == "invoke":
            return self.reply(200, model)
        if op == "invoke-with-response-stream":
            chunks = [{"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hello"}},
                      {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 3, "outputTokenCount": 2}}]
            return self.stream("application/vnd.amazon.eventstream",
                               [event("chunk", {"bytes": base64.b64encode(json.dumps(c).encode()).decode()}) for c in chunks])
        self.reply(404, {"message": "unknown operation"})


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
