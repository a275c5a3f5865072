#!/usr/bin/env python3
"""A mock of the providers' realtime WebSocket APIs, for the gateway's tests, on the
`websockets` library (not Keyward's code):

- OpenAI `/v1/realtime?model=M` and Azure `/openai/realtime?deployment=D` (and `/openai/v1/
  realtime`): the handshake must carry the expected key (`Authorization: Bearer`, Azure's
  `api-key`), else 401; `realtime` is chosen when offered. It says `session.created`; to
  `response.create` it answers a text delta and `response.done` with usage; to `echo-key` it
  quotes the key it was given; to `close-me` it closes with 4000 "done by provider".
- Gemini Live `/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent`:
  `x-goog-api-key` must be the expected key; to `setup` it answers `setupComplete`, to
  `clientContent` a turn and `usageMetadata`.

Usage: mock_realtime.py CONFIG.json ({"openai_key", "azure_key", "gemini_key"}). Prints its
port. GET /_log (plain HTTP) gives the handshakes and messages it saw, and how each session
ended.
"""
import asyncio, http, json, sys

from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

CONFIG = json.load(open(sys.argv[1]))
LOG = []


def expected(path, headers):
    if path.startswith("/v1/realtime"):
        return headers.get("authorization") == "Bearer " + CONFIG["openai_key"]
    if path.startswith("/openai/realtime") or path.startswith("/openai/v1/realtime"):
        return headers.get("api-key") == CONFIG["azure_key"]
    if path.startswith("/ws/google.ai.generativelanguage."):
        return headers.get("x-goog-api-key") == CONFIG["gemini_key"]
    return False


def process_request(connection, request):
    if request.path == "/_log":
        body = json.dumps(LOG).encode()
        return Response(200, "OK", Headers({"Content-Type": "application/json",
                                           "Content-Length": str(len(body))}), body)
    headers = {k.lower(): v for k, v in request.headers.raw_items()}
    ok = expected(request.path, headers)
    LOG.append({"kind": "handshake", "path": request.path, "ok": ok, "headers": headers})
    if not ok:
        return connection.respond(http.HTTPStatus.UNAUTHORIZED, "Incorrect API key provided.\n")
    return None


def select_subprotocol(connection, offered):
    return "realtime" if "realtime" in offered else None


async def handler(ws):
    path = ws.request.path
    session = {"kind": "session", "path": path, "messages": [], "closed": None}
    LOG.append(session)
    try:
        if path.startswith("/ws/"):
            await gemini(ws, session)
        else:
            await openai(ws, session)
    finally:
        session["closed"] = [ws.close_code, ws.close_reason]


async def openai(ws, session):
    key = CONFIG["azure_key"] if path_is_azure(ws.request.path) else CONFIG["openai_key"]
    await ws.send(json.dumps({"type": "session.created", "event_id": "e0",
                              "session": {"id": "sess_1", "object": "realtime.session", "model": "gpt-realtime"}}))
    async for message in ws:
        session["messages"].append(message if isinstance(message, str) else "<binary>")
        if message == "echo-key":
            await ws.send(json.dumps({"type": "error", "event_id": "e9",
                                      "error": {"type": "invalid_request_error", "message": f"you sent {key}"}}))
            continue
        if message == "echo-key-binary":
            await ws.send(f"binary: you sent {key}".encode())
            continue
        if message == "close-me":
            await ws.close(4000, "done by provider")
            return
        event = json.loads(message)
        if event.get("type") == "response.create":
            await ws.send(json.dumps({"type": "response.output_text.delta", "event_id": "e1", "response_id": "r1",
                                      "item_id": "i1", "output_index": 0, "content_index": 0,
                                      "delta": "Hello from realtime"}))
            await ws.send(json.dumps({"type": "response.done", "event_id": "e2",
                                      "response": {"id": "r1", "object": "realtime.response", "status": "completed",
                                                   "output": [],
                                                   "usage": {"total_tokens": 30, "input_tokens": 20,
                                                             "output_tokens": 10}}}))


def path_is_azure(path):
    return path.startswith("/openai/")


async def gemini(ws, session):
    async for message in ws:
        session["messages"].append(message if isinstance(message, str) else message.decode(errors="replace"))
        event = json.loads(message)
        if "setup" in event:
            # Gemini Live answers in binary frames; this one quotes the key.
            await ws.send(json.dumps({"setupComplete": {}, "note": "key " + CONFIG["gemini_key"]}).encode())
        elif "clientContent" in event:
            await ws.send(json.dumps({"serverContent": {"modelTurn": {"parts": [{"text": "Hello from Live"}]},
                                                        "turnComplete": True},
                                      "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 3,
                                                        "totalTokenCount": 7}}))


async def main():
    async with serve(handler, "127.0.0.1", 0, process_request=process_request,
                     select_subprotocol=select_subprotocol) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().create_future()


asyncio.run(main())
