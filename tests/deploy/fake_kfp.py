"""A fake of the KFP v2 REST API on 127.0.0.1 that records every request it receives."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API = "/apis/v2beta1"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeKfp:
    """Canned answers: existing pipelines and experiments by display name."""

    pipelines: dict[str, str] = field(default_factory=dict)
    experiments: dict[str, str] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    url: str = ""
    failures: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    """Statuses answered first, in order, to (method, route) before the canned answer (e.g. 503s)."""
    delay_s: dict[tuple[str, str], float] = field(default_factory=dict)
    """Seconds (method, route) waits before answering."""

    def calls(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == f"{API}{path}"]

    def answer(self, request: Request) -> tuple[int, dict[str, Any]]:  # noqa: PLR0911 (one answer per route)
        route = (request.method, request.path.removeprefix(API))
        if self.failures.get(route):
            return self.failures[route].pop(0), {"error": "scripted failure"}
        if route == ("GET", "/healthz"):
            return 200, {"multi_user": False}
        if route in (("GET", "/pipelines"), ("GET", "/experiments")):
            predicates = json.loads(request.query["filter"][0])["predicates"]
            name = predicates[0]["string_value" if "string_value" in predicates[0] else "stringValue"]
            known = self.pipelines if route[1] == "/pipelines" else self.experiments
            if name not in known:
                return 200, {}
            key = "pipelines" if route[1] == "/pipelines" else "experiments"
            id_key = "pipeline_id" if key == "pipelines" else "experiment_id"
            return 200, {key: [{id_key: known[name], "display_name": name}], "total_size": 1}
        if route == ("POST", "/pipelines/upload"):
            return 200, {"pipeline_id": "pipeline-new", "display_name": request.query["name"][0]}
        if route == ("POST", "/pipelines/upload_version"):
            return 200, {"pipeline_id": request.query["pipelineid"][0], "pipeline_version_id": "version-new"}
        if route == ("POST", "/experiments"):
            return 200, {"experiment_id": "experiment-new", "display_name": request.json()["display_name"]}
        if route == ("POST", "/runs"):
            return 200, {"run_id": "run-new", "display_name": request.json()["display_name"]}
        if route == ("POST", "/recurringruns"):
            return 200, {"recurring_run_id": "recurring-new", "display_name": request.json()["display_name"]}
        return 404, {"error": f"fake KFP has no route {route}"}


def serve(fake: FakeKfp) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Start ``fake`` on a free port of 127.0.0.1; the caller shuts the server down."""

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(
                self.command,
                parts.path,
                parse_qs(parts.query),
                self.rfile.read(length),
                {key.lower(): value for key, value in self.headers.items()},
            )
            fake.requests.append(request)
            time.sleep(fake.delay_s.get((request.method, request.path.removeprefix(API)), 0.0))
            status, payload = fake.answer(request)
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _handle  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread
