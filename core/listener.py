"""The loopback redirect listener (RFC 8252 §7.3, §8.3): loopback-only, exclusive, one path."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from . import pages
from .errors import ListenError, PortBusy
from .httpserver import LoopbackServer, QuietHandler
from .urls import check_url

log = logging.getLogger("loopauth.listener")

# (status, html) for a callback; the flow decides.
Handler = Callable[[dict[str, str]], tuple[int, str]]

MAX_CONNECTIONS = 64
READ_TIMEOUT = 10.0
REQUEST_DEADLINE = 5.0  # for the whole request head: slow-drip clients can't hold a slot
CLOSE_WAIT = 2.0  # in all, after the reply: a client that keeps talking can't hold a slot


class _Reaper:
    """Cuts connections whose deadline passed: one thread per server, not one per connection."""

    def __init__(self, name: str) -> None:
        self._deadlines: dict[socket.socket, float] = {}
        self._changed = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def stop(self) -> None:
        """Cut what is still watched, and wait for the thread to end (it may never have started)."""
        with self._changed:
            # The listener is closing: a request still on its way would find nobody to serve it.
            self._stopped = True
            for sock in self._deadlines:
                _cut(sock)
            self._deadlines.clear()
            self._changed.notify()
        if self._thread.is_alive():
            self._thread.join()

    def watch(self, sock: socket.socket, seconds: float) -> None:
        """Cut `sock` in `seconds` unless it is forgotten before."""
        with self._changed:
            if self._stopped:  # accepted just before the listener closed
                _cut(sock)
                return
            self._deadlines[sock] = time.monotonic() + seconds
            self._changed.notify()

    def forget(self, sock: socket.socket) -> bool:
        """Stop watching `sock`; return False when its deadline had already cut it."""
        with self._changed:
            return self._deadlines.pop(sock, None) is not None

    def _run(self) -> None:
        with self._changed:
            while not self._stopped:
                now = time.monotonic()
                for sock, deadline in list(self._deadlines.items()):
                    if deadline <= now:
                        # Under the lock: once forget() has returned, the socket is not touched.
                        del self._deadlines[sock]
                        _cut(sock)
                soonest = min(self._deadlines.values(), default=None)
                self._changed.wait(None if soonest is None else soonest - now)


def _cut(sock: socket.socket) -> None:
    """Wake the thread reading `sock`, and have its close reset rather than linger."""
    with contextlib.suppress(OSError):
        # A reset leaves no TIME_WAIT behind on a fixed port (see _let_client_close_first).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)


class _Server(LoopbackServer):
    request_queue_size = 16

    def __init__(self, address: tuple[str, int], listener: Listener) -> None:
        self.listener = listener
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        # Made before binding: a failed bind calls server_close(), which stops it.
        self.reaper = _Reaper(f"loopauth-reaper-{address[1]}")
        super().__init__(address, _RequestHandler)
        self.reaper.start()

    def server_close(self) -> None:
        super().server_close()
        self.reaper.stop()

    def process_request(self, request, client_address):  # type: ignore[no-untyped-def]
        # A flood of connections must not exhaust threads: past the cap, close at once.
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):  # type: ignore[no-untyped-def]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class _RequestHandler(QuietHandler):
    server: _Server
    timeout = READ_TIMEOUT  # per-connection: a half-open client can't wedge the flow
    server_version = "loopauth"

    def setup(self) -> None:
        super().setup()
        # READ_TIMEOUT bounds each read; this bounds the whole request head.
        self.server.reaper.watch(self.connection, REQUEST_DEADLINE)

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        # The head is in: handling it may wait on the token endpoint, which the deadline must
        # not cut. A head the deadline did cut only looks complete (EOF ends the headers).
        if not self.server.reaper.forget(self.connection):
            self.close_connection = True
            return False
        return parsed

    def finish(self) -> None:
        self.server.reaper.forget(self.connection)  # e.g. the client closed before a full head
        super().finish()

    def _let_client_close_first(self) -> None:
        # Whoever closes first keeps the port in TIME_WAIT for a minute, and without
        # SO_REUSEADDR that would make the next login on a fixed port fail: let the browser
        # close first, and reset the connection if it does not within CLOSE_WAIT in all
        # (a deadline per read would let a client that keeps sending hold its slot forever).
        sock = self.connection
        deadline = time.monotonic() + CLOSE_WAIT
        try:
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                if not sock.recv(4096):
                    return  # the browser closed first
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self._reply(code, pages.notice(f"Error {code}", message or "Bad request"))

    def _reply(self, status: int, body: str) -> None:
        self.server.reaper.forget(self.connection)  # an error may be answered before the head is in
        data = body.encode("utf-8")
        try:
            self.send_response(status)
            for name, value in pages.SECURITY_HEADERS.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            pass  # the browser went away; nothing to tell it
        self.close_connection = True
        self._let_client_close_first()

    def do_GET(self) -> None:
        listener = self.server.listener
        if not listener.host_allowed(self.headers.get("Host")):
            # DNS rebinding: a page on another name that resolves to 127.0.0.1.
            self._reply(
                421, pages.notice("Wrong host", "This listener only answers loopback names.")
            )
            return
        parts = urlsplit(self.path)
        if parts.path != listener.path:
            self._reply(404, pages.notice("Not found", "Nothing here; the login is still waiting."))
            return
        try:
            pairs = parse_qsl(
                parts.query, keep_blank_values=True, max_num_fields=64, strict_parsing=False
            )
        except ValueError:
            self._reply(400, pages.notice("Bad request", "Too many parameters."))
            return
        params: dict[str, str] = {}
        for key, value in pairs:
            if key in params:  # RFC 6749 §3.1: parameters must not repeat
                self._reply(400, pages.notice("Bad request", f"Parameter {key!r} repeats."))
                return
            params[key] = value
        status, body = listener.handler(params)
        self._reply(status, body)
        if listener.after_reply is not None:
            listener.after_reply()

    def do_HEAD(self) -> None:
        self.command = "HEAD"
        self._reply(405, "")

    def _not_allowed(self) -> None:
        self._reply(405, pages.notice("Method not allowed", "Only GET is served here."))

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed


def _addresses(host: str) -> list[str]:
    if host == "localhost":  # bind both stacks: browsers differ in which they try first
        return ["127.0.0.1", "::1"]
    return [host]


def describe_ports(ports: Sequence[int]) -> str:
    """Return ports as a user writes them: runs as `8400-8409`, others comma-separated."""
    runs: list[list[int]] = []
    for port in ports:
        if runs and port == runs[-1][1] + 1:
            runs[-1][1] = port
        else:
            runs.append([port, port])
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in runs)


class Listener:
    """Listens on the redirect URI's loopback host and port and serves only its path.

    With `ports` (the redirect URI then has no port), it takes the first of them that is free
    on every loopback address of the host.
    """

    def __init__(
        self,
        redirect_uri: str,
        handler: Handler,
        after_reply: Callable[[], None] | None = None,
        *,
        ports: Sequence[int] | None = None,
    ) -> None:
        parts = urlsplit(redirect_uri)
        if check_url(redirect_uri, redirect=True):  # loopback http only (RFC 8252 §7.3)
            raise ListenError(f"will not listen for {redirect_uri}: not a loopback http URL")
        self.after_reply = after_reply
        self.host = (parts.hostname or "127.0.0.1").lower()
        self.requested_port = parts.port or 0
        self.ports = list(ports or ())
        if self.ports and self.requested_port:
            raise ListenError(
                f"redirect_uri has port {self.requested_port} and a port range "
                f"({describe_ports(self.ports)}) was given too; keep one of them"
            )
        self.path = parts.path or "/"
        self.handler = handler
        self._parts = parts
        self._servers: list[_Server] = []
        self.port = 0

    @property
    def redirect_uri(self) -> str:
        """Return the redirect URI with the port actually bound."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return urlunsplit(("http", f"{host}:{self.port}", self.path, self._parts.query, ""))

    def host_allowed(self, header: str | None) -> bool:
        """Return True when the Host header names this listener by a loopback name."""
        if not header:
            return False
        names = {
            "127.0.0.1",
            "[::1]",
            "localhost",
            self.host if ":" not in self.host else f"[{self.host}]",
        }
        return header.lower() in {f"{n}:{self.port}" for n in names}

    def start(self) -> str:
        """Bind exclusively on loopback, serve in the background, return the redirect URI."""
        if self.ports:
            self._bind_first_free()
        elif self.requested_port:
            try:
                self._bind_all(self.requested_port)
            except _Busy as busy:
                raise PortBusy(
                    f"port {busy.port} on {busy.address} is already in use (another login, or "
                    f"another program, is listening there); end it and log in again, or change "
                    f"the port in redirect_uri (and in the redirect URL registered with the "
                    f"provider)"
                ) from None
        else:
            for _attempt in range(20):
                try:
                    self._bind_all(0)
                    break
                except _Busy:  # the ephemeral port is taken on the other stack: another one
                    self.close()
            else:
                raise ListenError(
                    f"could not find a free port on both loopback stacks for {self.host}"
                )
        for server in self._servers:
            server.serve_in_background(f"loopauth-listener-{self.port}")
        log.debug("listening on %s", self.redirect_uri)
        return self.redirect_uri

    def _bind_first_free(self) -> None:
        for port in self.ports:
            try:
                self._bind_all(port)
                return
            except _Busy:
                self.close()  # a port taken on one stack is no use on the other: the next one
        where = "127.0.0.1 and ::1" if self.host == "localhost" else self.host
        shown = describe_ports(self.ports)
        raise PortBusy(
            f"every port of redirect_port_range ({shown}) on {where} is already in use (other "
            f"logins, or other programs, are listening there); end some of them and log in "
            f"again, or widen redirect_port_range and register the redirect URLs of the new "
            f"ports with the provider"
        )

    def _bind_all(self, port: int) -> None:
        for i, address in enumerate(_addresses(self.host)):
            try:
                server = _Server((address, port), self)
            except OSError as exc:
                if i > 0 and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    log.debug("no IPv6 loopback here; listening on 127.0.0.1 only")
                    continue
                if exc.errno == errno.EACCES and os.name == "posix" and 0 < port < 1024:
                    raise ListenError(
                        f"port {port} needs administrator rights here (ports below 1024 do); "
                        "use a port above 1023 in redirect_uri (and in the provider's "
                        "registered redirect URL)"
                    ) from None
                if exc.errno in _BUSY:
                    raise _Busy(address, port) from None
                if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    raise ListenError(
                        f"cannot listen on {address}: no such loopback address on this machine"
                    ) from None
                raise ListenError(f"cannot listen on {address}:{port}: {exc.strerror}") from None
            self._servers.append(server)
            port = server.server_port  # an ephemeral port: the other stack must take the same
        self.port = port

    def close(self) -> None:
        """Stop serving and close the port (idempotent)."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.stop()


# EACCES too: Windows answers it for a port another program holds exclusively (or that is
# reserved), Linux for a privileged one; either way this port can't be had.
_BUSY = {
    errno.EADDRINUSE,
    errno.EACCES,
    getattr(errno, "WSAEADDRINUSE", -1),
    getattr(errno, "WSAEACCES", -1),
}


class _Busy(Exception):
    """A port is taken on one of the host's addresses."""

    def __init__(self, address: str, port: int) -> None:
        super().__init__(address, port)
        self.address, self.port = address, port
