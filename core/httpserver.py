"""The loopback HTTP server under the listener and the emulators: exclusive, threaded, quiet."""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["LoopbackServer", "QuietHandler"]

log = logging.getLogger("loopauth.httpserver")


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server that holds its loopback port alone and serves in the background."""

    daemon_threads = True  # a client that never hangs up must not keep the process alive
    block_on_close = False  # nor make closing wait for it
    allow_reuse_address = False  # exclusive bind (RFC 8252 App. B.5): never SO_REUSEADDR
    _serving: threading.Thread | None = None

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def server_bind(self) -> None:
        """Bind so that no other program can share the port, and skip the reverse DNS lookup."""
        if os.name == "nt":  # Windows lets others bind the same port unless told otherwise
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined]
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # TCPServer's bind, not HTTPServer's: that one does a reverse DNS lookup (slow offline).
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)

    def serve_in_background(self, name: str) -> threading.Thread:
        """Serve in a daemon thread called `name`, and return it."""
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name=name, daemon=True
        )
        thread.start()
        self._serving = thread
        return thread

    def stop(self) -> None:
        """Stop serving (if it started) and close the socket."""
        thread, self._serving = self._serving, None
        if thread is not None:
            self.shutdown()  # only when serving: it waits for serve_forever to return
        self.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def handle_error(self, request: object, client_address: object) -> None:
        """Note a connection that failed, without the traceback the default prints."""
        host = client_address[0] if isinstance(client_address, tuple) else client_address
        log.debug("connection from %s ended with an error", host)


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that never logs, and names no Python version."""

    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:
        """Log nothing: the request line can hold an authorization code."""
