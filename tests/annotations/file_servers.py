"""Small real HTTP(S) file servers for the URL import tests: routes for redirects, loops, oversized,
slow and hanging answers; each server records what it was asked (path and Host header)."""
from __future__ import annotations

import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BODY = b'{"prompt": "Fetched prompt one"}\n{"prompt": "Fetched prompt two"}\n'
STAND_IN = "127.0.0.2"  # "a public host" for these tests
INSIDE = "127.0.0.1"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.seen.append((url.path, self.headers.get("Host")))
        route = url.path.rstrip("/").rsplit("/", 1)[-1]
        if route == "redirect":
            self._answer(int(query.get("code", 302)), b"", {"Location": query["to"]})
        elif route == "loop":
            self._answer(302, b"", {"Location": "/loop"})
        elif route == "hop":  # a relative redirect to a file on the same host
            self._answer(301, b"", {"Location": "prompts.jsonl"})
        elif route == "big":  # no length: keeps sending
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x" * 1000)
        elif route == "declared-big":
            self._answer(200, b"x", {"Content-Length": "999999999"}, length=False)
        elif route == "slow":  # headers at once, then a byte every 0.3 s
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.3)
        elif route == "hang":
            time.sleep(5)
        elif route == "gzip":
            self._answer(200, b"\x1f\x8b", {"Content-Encoding": "gzip"})
        elif route == "missing":
            self._answer(404, b"nope")
        else:
            self._answer(200, BODY, {"Content-Type": "application/x-ndjson"})

    def _answer(self, status, body, headers=None, length=True):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


class Server:
    def __init__(self, host, port=0, tls: ssl.SSLContext | None = None):
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.httpd.seen = []
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.host, self.port = host, self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def seen(self):
        return self.httpd.seen

    def url(self, path="/prompts.jsonl", host=None, scheme="http"):
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
