"""7. The redirect listener's requests/s against a plain `http.server`."""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import BenchError, Context, Row, Target, ratio_row, split_rounds

NAME = "listener"
TITLE = "Redirect listener throughput"
DESCRIPTION = """\
Sequential `GET /callback?code=…&state=…` requests, a new connection each (`http.client`, read
the answer, close), from this process: loopauth's `loopauth.listener.Listener` on
`http://127.0.0.1:0/callback` with a handler answering 200, against
`http.server.ThreadingHTTPServer` with a minimal handler answering 200. Requests/s of each,
rounds alternating; the ratio is listener / http.server. Target: ≥ 0.5x."""

TARGET = Target(">=", 0.5)
PATH = "/callback?code=bench-code&state=bench-state"


class _Plain(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>ok</title>ok"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet, like the listener."""


def _rate(port: int, count: int) -> float:
    """Requests per second over `count` sequential requests without keep-alive."""
    start = time.perf_counter()
    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", PATH)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise BenchError(f"127.0.0.1:{port} answered HTTP {resp.status}")
        finally:
            conn.close()
    return count / (time.perf_counter() - start)


def run(ctx: Context) -> list[Row]:
    """Start both servers in this process and alternate rounds of requests."""
    from loopauth.listener import Listener

    listener = Listener("http://127.0.0.1:0/callback", lambda params: (200, "ok"))
    listener.start()
    ctx.stack.callback(listener.close)
    plain = ThreadingHTTPServer(("127.0.0.1", 0), _Plain)
    plain.daemon_threads = True
    thread = threading.Thread(
        target=plain.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()

    def stop_plain() -> None:
        plain.shutdown()
        plain.server_close()
        thread.join(5)

    ctx.stack.callback(stop_plain)
    ports = {"plain": int(plain.server_address[1]), "listener": listener.port}
    count = max(50, ctx.runs * 10)
    rounds = split_rounds(max(3, ctx.runs // 8), 5)
    ctx.log(f"listener: {sum(rounds)} rounds of {count} requests to each server")
    for key in ports:
        _rate(ports[key], 20)  # warm-up
    rates: dict[str, list[list[float]]] = {"plain": [], "listener": []}
    turn = 0
    for size in rounds:
        for key in rates:
            rates[key].append([])
        for _ in range(size):
            order = ["plain", "listener"] if turn % 2 == 0 else ["listener", "plain"]
            turn += 1
            for key in order:
                rates[key][-1].append(_rate(ports[key], count))
    return [
        ratio_row(
            NAME,
            "listener requests/s vs `http.server`",
            "`http.server.ThreadingHTTPServer`",
            "`loopauth.listener.Listener`",
            rates["plain"],
            rates["listener"],
            target=TARGET,
            unit="req/s",
            note=f"{sum(rounds)} rounds of {count} requests each, new connection per request",
        )
    ]
