"""Small builders for status tests, and local HTTP targets that behave as told."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hadr_portal.status.models import Check, Service

# The service form's fields for a service named "shop" (tests add or change what they are about).
SERVICE_FORM_FIELDS = {
    "name": "shop",
    "display_name": "Shop",
    "kind": "web",
    "tier": "2",
    "owner_role": "DevOps",
    "rto_minutes": "60",
    "rpo_minutes": "60",
}


def make_service(name: str = "app", *, tier: int = 2, kind: str = "web", **fields: Any) -> Service:
    return Service.objects.create(
        name=name, display_name=fields.pop("display_name", name.title()), kind=kind, tier=tier, **fields
    )


def make_check(
    service: Service, name: str = "health", kind: str = "http", config: dict[str, Any] | None = None, **fields: Any
) -> Check:
    fields.setdefault("interval_seconds", 15)
    fields.setdefault("timeout_seconds", 2.0)
    return Check.objects.create(service=service, name=name, kind=kind, config=config or {}, **fields)


class Target:
    """A local HTTP server whose answer the test changes: status, body, delay; it records POSTed JSON
    and the headers that came with it."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b"ok"
        self.delay = 0.0
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                time.sleep(target.delay)
                self.send_response(target.status)
                self.send_header("Content-Length", str(len(target.body)))
                self.end_headers()
                self.wfile.write(target.body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                target.received.append(json.loads(self.rfile.read(length) or b"null"))
                target.headers.append(dict(self.headers))
                self.send_response(target.status)
                self.send_header("Content-Length", str(len(target.body)))
                self.end_headers()
                self.wfile.write(target.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # polled often: `shutdown()` waits for the next poll, which every test using a target would otherwise pay
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def http_target() -> Iterator[Target]:
    target = Target()
    try:
        yield target
    finally:
        target.close()
