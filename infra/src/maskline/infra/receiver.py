"""A real HTTP server on loopback for what the platform sends out (OTLP spans for `maskline
traces`, webhooks in the tests): each POST's headers and body go to a callback, whose return value
is the status answered."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable

from maskline.infra.embedded.process import free_port

OnPost = Callable[[dict[str, str], bytes], int]


class Receiver:
    def __init__(self, on_post: OnPost, port: int = 0) -> None:
        self.port = port or free_port()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(on_post(dict(self.headers), body))
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
