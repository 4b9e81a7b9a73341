"""A scripted OpenAI-compatible server for error paths (timeouts, 500s, bad JSON). The happy
path is tested against the real vLLM server in tests/integration/test_vllm_models.py."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeModelServer:
    """``replies`` is a list of callables(request_json) -> (status, body) consumed in order; the
    last one repeats. Each request is recorded in ``requests``."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    reply = server.replies.pop(0) if len(server.replies) > 1 else server.replies[0]
                status, payload = reply(body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self.send_response(200)
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def chat(*texts, finish="stop", tokens=5):
    """A reply handler answering with these choice texts (or n copies of one text)."""

    def handler(body):
        n = body.get("n", 1)
        contents = list(texts) if len(texts) > 1 else [texts[0]] * n
        return 200, {"choices": [{"index": i, "message": {"role": "assistant", "content": c}, "finish_reason": finish}
                                 for i, c in enumerate(contents[:n])],
                     "usage": {"completion_tokens": tokens * n}}

    return handler


def status(code, message="boom"):
    return lambda body: (code, {"error": {"message": message}})


def garbage(body):
    return 200, b"<html>not json"
