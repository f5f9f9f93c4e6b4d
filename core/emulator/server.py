"""The emulators' HTTP server: requests in, `route`, responses out, on a loopback port."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self, TextIO, cast

from ..httpserver import LoopbackServer, QuietHandler
from ..pages import FORM_SECURITY_HEADERS
from ..urls import is_loopback_host

__all__ = ["MAX_BODY", "EmulatorServer", "RecordingServer", "Request", "Response", "run"]

MAX_BODY = 1024 * 1024


@dataclass
class Request:
    """One parsed HTTP request, as handed to `EmulatorServer.route`."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased
    body: bytes = b""
    query_multi: dict[str, list[str]] = field(default_factory=dict)
    form_multi: dict[str, list[str]] = field(default_factory=dict)

    @property
    def form(self) -> dict[str, str]:
        """First value of each form-encoded body field."""
        return {k: v[0] for k, v in self.form_multi.items()}


@dataclass
class Response:
    """An HTTP response; a dict body is sent as JSON."""

    status: int
    body: bytes | str | dict[str, Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = ""

    def encode(self) -> tuple[bytes, str]:
        """Return the body bytes and the Content-Type to send."""
        if isinstance(self.body, dict):
            return json.dumps(self.body).encode(), self.content_type or "application/json"
        if isinstance(self.body, str):
            return self.body.encode(), self.content_type or "text/plain; charset=utf-8"
        return self.body, self.content_type or "application/octet-stream"

    @classmethod
    def html(cls, status: int, page: str, headers: dict[str, str] | None = None) -> Response:
        """An HTML page that is never cached or framed (it carries per-request parameters)."""
        base = dict(FORM_SECURITY_HEADERS)  # consent pages hold forms
        return cls(status, page, {**base, **(headers or {})}, "text/html; charset=utf-8")

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Response:
        """A bare redirect to `location`."""
        return cls(status, "", {"Location": location, "Cache-Control": "no-store"})


class _HTTPServer(LoopbackServer):
    def __init__(self, emulator: EmulatorServer, address: tuple[str, int]) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)


class _Handler(QuietHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # a stalled client must not pin a thread forever
    server_version = "loopauth-emulator"

    def do_GET(self) -> None:
        """Dispatch a GET."""
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header, from the emulator's clock (a test may run it ahead or behind)."""
        if timestamp is None:
            timestamp = cast(_HTTPServer, self.server).emulator.now()
        return super().date_time_string(timestamp)

    def _dispatch(self) -> None:
        emulator = cast(_HTTPServer, self.server).emulator
        split = urllib.parse.urlsplit(self.path)
        emulator._record(self.command, split.path)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY or self.headers.get("Transfer-Encoding"):
            # The body stays unread (chunked is unsupported), so the connection cannot be reused.
            status, error = (
                (413, "payload_too_large") if length > MAX_BODY else (400, "bad_request")
            )
            self._send(Response(status, {"error": error}, {"Connection": "close"}))
            return
        body = self.rfile.read(length) if length else b""
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        form: dict[str, list[str]] = {}
        if ctype == "application/x-www-form-urlencoded":
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        req = Request(
            method=self.command,
            path=split.path,
            query={k: v[0] for k, v in query.items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            query_multi=query,
            form_multi=form,
        )
        try:
            resp = emulator.route(req)
        except Exception:  # a bug in one route must not take the server down
            resp = Response(500, {"error": "server_error"})
        self._send(resp)

    def _send(self, resp: Response) -> None:
        body, ctype = resp.encode()
        try:
            self.send_response(resp.status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for name, value in resp.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class EmulatorServer:
    """A threaded HTTP server on loopback whose subclasses answer requests in `route`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if not is_loopback_host(host):  # a test fixture, never a server for the network
            raise ValueError(f"emulators listen on loopback addresses only, not {host!r}")
        self.host, self._requested_port = host, port
        self.log: list[tuple[str, str]] = []
        self._log_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Bind the socket and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        httpd = _HTTPServer(self, (self.host, self._requested_port))
        self._httpd = httpd
        self._thread = httpd.serve_in_background(f"{type(self).__name__}:{self.port}")
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        httpd, self._httpd, self._thread = self._httpd, None, None
        if httpd is not None:
            httpd.stop()

    def wait(self) -> None:
        """Block until the server is stopped (from another thread)."""
        while (thread := self._thread) is not None and thread.is_alive():
            thread.join(0.5)  # short joins keep KeyboardInterrupt responsive

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        if self._httpd is None:
            raise RuntimeError("emulator is not started")
        return self._httpd.server_port

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def route(self, req: Request) -> Response:
        """Answer one request; subclasses override and fall back to this 404."""
        return Response(404, {"error": "not_found", "error_description": f"no route {req.path}"})

    def now(self) -> float:
        """The server's clock in Unix seconds (the Date header); subclasses may skew it."""
        return time.time()

    def _record(self, method: str, path: str) -> None:
        with self._log_lock:
            self.log.append((method, path))


class RecordingServer(EmulatorServer):
    """Answers every request with `answer` (a Response, or one made from the request) and keeps
    each request in `seen`: a stand-in API, or an attacker's server, in tests."""

    def __init__(self, answer: Response | Callable[[Request], Response]) -> None:
        super().__init__()
        self.answer = answer
        self.seen: list[Request] = []
        self._seen_lock = threading.Lock()

    def route(self, req: Request) -> Response:
        """Keep the request, then answer it."""
        with self._seen_lock:
            self.seen.append(req)
        return self.answer(req) if callable(self.answer) else self.answer


def run(emulator: EmulatorServer, *, out: TextIO | None = None) -> None:
    """Serve `emulator` until Ctrl-C (or until stopped elsewhere); `out` defaults to stderr."""
    stream = out if out is not None else sys.stderr  # resolved late so captured stderr works
    with emulator:
        print(f"emulator listening on {emulator.url}", file=stream, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            emulator.wait()
