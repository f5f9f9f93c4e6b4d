"""A hostile local client against the listener while a login waits: it keeps serving, never
calls the token endpoint without the right state, and the real callback still completes."""

from __future__ import annotations

import http.client
import select
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopauth.config import parse
from loopauth.emulator import OAuthEmulator, browse
from loopauth.flow import Flow, State
from loopauth.listener import MAX_CONNECTIONS, REQUEST_DEADLINE


@pytest.fixture
def waiting(isolated: object) -> Iterator[tuple[Flow, OAuthEmulator, int]]:
    """A flow waiting for its redirect, and the listener's port."""
    with OAuthEmulator() as emu:
        provider = parse(
            f"providers:\n  e:\n    issuer: {emu.url}\n"
            "    client_id: loopauth-demo\n    timeout: 600\n"
        ).select("e")
        flow = Flow(provider)
        flow.start()
        port = urlsplit(flow.redirect_uri).port
        yield flow, emu, port
        flow.cancel()


def raw(port: int, data: bytes, *, timeout: float = 3.0) -> bytes:
    """Send raw bytes, return whatever comes back before the server closes (or timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except OSError:
            pass
        return b"".join(chunks)


def still_serving(port: int) -> None:
    reply = raw(port, b"GET /nothing HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)
    assert reply.startswith(b"HTTP/1.0 404") or reply.startswith(b"HTTP/1.1 404"), reply[:80]


def finish_for_real(flow: Flow, emu: OAuthEmulator) -> None:
    assert flow.state is State.WAITING_FOR_REDIRECT
    assert emu.token_calls == []
    page = browse(flow.authorization_url or "")
    assert page.status == 200, page.body[:200]
    assert flow.wait(10) is State.SUCCEEDED
    assert len(emu.token_calls) == 1


METHODS = st.sampled_from(
    [
        "GET",
        "POST",
        "HEAD",
        "PUT",
        "DELETE",
        "OPTIONS",
        "TRACE",
        "CONNECT",
        "PATCH",
        "G\x00T",
        "get",
        "",
    ]
)
TEXT = st.text(st.characters(codec="latin-1"), max_size=200)
PATHS = st.one_of(
    st.just("/callback"),
    st.text(max_size=120).map(lambda t: "/" + quote(t)),
    TEXT.map(lambda t: t.replace("\r", "").replace("\n", "")),
)
QUERIES = st.lists(
    st.tuples(st.sampled_from(["code", "state", "error", "iss", "x", ""]), TEXT), max_size=6
).map(lambda pairs: "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs))
HEADERS = st.lists(
    st.tuples(
        st.text(min_size=1, max_size=20).filter(
            lambda t: "\r" not in t and "\n" not in t and ":" not in t
        ),
        TEXT.map(lambda t: t.replace("\r", " ").replace("\n", " ")),
    ),
    max_size=8,
)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=METHODS,
    path=PATHS,
    query=QUERIES,
    headers=HEADERS,
    host=st.sampled_from(["127.0.0.1", "localhost", "evil.example", "", None]),
    version=st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/9.9", ""]),
)
def test_random_requests_never_reach_the_token_endpoint(
    waiting: tuple[Flow, OAuthEmulator, int],
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    host: str | None,
    version: str,
) -> None:
    flow, emu, port = waiting
    lines = [f"{method} {path}{'?' + query if query else ''} {version}".encode("latin-1")]
    if host is not None:
        lines.append(f"Host: {host}:{port}".encode())
    lines += [f"{k}: {v}".encode("latin-1", "replace") for k, v in headers]
    raw(port, b"\r\n".join(lines) + b"\r\n\r\n", timeout=REQUEST_DEADLINE + 2)
    assert flow.state is State.WAITING_FOR_REDIRECT
    assert emu.token_calls == []


def test_after_the_fuzzing_the_real_callback_completes(
    waiting: tuple[Flow, OAuthEmulator, int],
) -> None:
    flow, emu, port = waiting
    for junk in (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200),  # a TLS hello
        b"\xff\xfe\x00garbage\r\n\r\n",
        b"\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n",  # too many headers
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",  # request line too long
        b"GET /callback HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX: " % port + b"b" * 70000 + b"\r\n\r\n",
    ):
        raw(port, junk)
        still_serving(port)
    finish_for_real(flow, emu)


def test_half_open_and_slow_connections_are_dropped(
    waiting: tuple[Flow, OAuthEmulator, int],
) -> None:
    flow, emu, port = waiting
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    slow = socket.create_connection(("127.0.0.1", port))
    started = time.monotonic()
    closed_after = None
    try:  # one byte every 0.3 s: each read is quick, the whole request never completes
        for byte in b"GET /callback?code=x HTTP/1.1\r\nHost: 127.0.0.1\r\n":
            slow.sendall(bytes([byte]))
            time.sleep(0.3)
            if time.monotonic() - started > REQUEST_DEADLINE + 3:
                break
    except OSError:
        closed_after = time.monotonic() - started
    if closed_after is None:
        slow.settimeout(2)
        try:
            assert slow.recv(100) == b""
        except OSError:
            pass
        closed_after = time.monotonic() - started
    assert closed_after < REQUEST_DEADLINE + 4
    for s in idle:
        s.settimeout(REQUEST_DEADLINE + 2)
        try:
            assert s.recv(100) == b""  # closed by the server's deadline, not by us
        except ConnectionResetError:
            pass
        s.close()
    slow.close()
    still_serving(port)
    finish_for_real(flow, emu)


def test_a_flood_of_connections_and_requests(waiting: tuple[Flow, OAuthEmulator, int]) -> None:
    flow, emu, port = waiting
    hogs = []
    for _ in range(MAX_CONNECTIONS + 16):  # more idle connections than the listener serves
        try:
            hogs.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            pass
    answered: list[bytes] = []
    until = time.monotonic() + REQUEST_DEADLINE + 3  # past the deadline that frees the slots

    def hammer() -> None:
        i = 0
        while time.monotonic() < until:
            i += 1
            try:
                answered.append(
                    raw(
                        port,
                        b"GET /x%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (i, port),
                        timeout=2,
                    )[:12]
                )
            except OSError:
                answered.append(b"")
            time.sleep(0.02)

    workers = [threading.Thread(target=hammer) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    # The idle connections were still open on our side: the listener freed their slots itself.
    assert any(a.startswith(b"HTTP/1.0 404") for a in answered), len(answered)
    for s in hogs:
        s.close()
    still_serving(port)
    finish_for_real(flow, emu)


def drip_until_closed(sock: socket.socket, limit: float) -> float | None:
    """Send a byte every 0.5 s until the server closes; return when that was (None: never)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            sock.sendall(b"a")
            readable, _, _ = select.select([sock], [], [], 0.5)
            if readable and not sock.recv(4096):
                return time.monotonic() - started
        except OSError:
            return time.monotonic() - started
    return None


def test_a_slow_request_head_is_cut_at_the_deadline_and_not_served(
    waiting: tuple[Flow, OAuthEmulator, int],
) -> None:
    flow, emu, port = waiting
    state = parse_qs(urlsplit(flow.authorization_url or "").query)["state"][0]
    # The request line and Host arrive at once, with the flow's real state; then a header
    # that never ends. Each byte is quick, the head as a whole is not.
    heads = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
    for s in heads:
        s.sendall(
            b"GET /callback?code=x&state=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Slow: "
            % (state.encode(), port)
        )
    closed_after: list[float | None] = [None] * len(heads)

    def drip(i: int) -> None:
        closed_after[i] = drip_until_closed(heads[i], REQUEST_DEADLINE + 5)

    drippers = [threading.Thread(target=drip, args=(i,)) for i in range(len(heads))]
    for t in drippers:
        t.start()
    for t in drippers:
        t.join(REQUEST_DEADLINE + 10)
    for s in heads:
        s.close()
    for after in closed_after:  # one deadline for the whole head, not one per read
        assert after is not None and REQUEST_DEADLINE - 1 < after < REQUEST_DEADLINE + 3, after
    # What had arrived when the deadline passed looks like a whole request; it is not served.
    assert flow.state is State.WAITING_FOR_REDIRECT
    assert emu.token_calls == []
    finish_for_real(flow, emu)


def test_dripping_clients_cannot_starve_the_real_callback(
    waiting: tuple[Flow, OAuthEmulator, int],
) -> None:
    flow, emu, port = waiting
    dripping: list[socket.socket] = []
    lock = threading.Lock()
    stop = threading.Event()

    def drip() -> None:  # one byte every 0.5 s on every connection, until it is closed
        while not stop.wait(0.5):
            with lock:
                for s in list(dripping):
                    try:
                        s.sendall(b"a")
                    except OSError:
                        dripping.remove(s)

    dripper = threading.Thread(target=drip)
    dripper.start()
    opened: list[socket.socket] = []
    try:
        for _ in range(MAX_CONNECTIONS):  # every slot: each gets its 404, then keeps talking
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            opened.append(s)
            s.sendall(b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)
            assert s.recv(12) in (b"HTTP/1.0 404", b"HTTP/1.1 404")
            with lock:
                dripping.append(s)
        started = time.monotonic()
        page = None
        while page is None and time.monotonic() - started < 10:
            try:  # the listener turns us away while the drippers hold every slot
                page = browse(flow.authorization_url or "", timeout=5)
            except (OSError, http.client.HTTPException):
                time.sleep(0.2)
        elapsed = time.monotonic() - started
        assert page is not None, "the drippers kept the real callback out"
        assert page.status == 200, page.body[:200]
        assert flow.wait(10) is State.SUCCEEDED
        assert elapsed < 8, elapsed
        assert len(emu.token_calls) == 1
    finally:
        stop.set()
        dripper.join(10)
        for s in opened:
            s.close()


def test_waiting_connections_do_not_get_a_thread_each(
    waiting: tuple[Flow, OAuthEmulator, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopauth import listener

    _flow, _emu, port = waiting
    monkeypatch.setattr(listener, "REQUEST_DEADLINE", 60.0)  # none is dropped while we count
    before = set(threading.enumerate())
    count = 20
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
    try:
        until = time.monotonic() + 10
        while time.monotonic() < until:  # until each connection has its handler thread
            handlers = [
                t for t in set(threading.enumerate()) - before if "process_request" in t.name
            ]
            if len(handlers) >= count:
                break
            time.sleep(0.05)
        time.sleep(0.3)  # anything started along with the handlers has started by now
        assert len(handlers) == count
        assert not [t for t in threading.enumerate() if isinstance(t, threading.Timer)]
        # One thread per waiting connection (its handler), not two.
        new = set(threading.enumerate()) - before
        assert len(new) <= count + 2, new
    finally:
        for s in idle:
            s.close()


def test_close_ends_waiting_connections_and_the_reaper_at_once() -> None:
    from loopauth.listener import Listener

    def reapers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("loopauth-reaper")]

    threads_before = set(threading.enumerate())
    before = set(reapers())
    listener = Listener("http://localhost:0/callback", lambda params: (200, "ok"))
    listener.start()
    ours = set(reapers()) - before  # one per loopback stack
    idle = [socket.create_connection(("127.0.0.1", listener.port), timeout=5) for _ in range(5)]
    try:
        until = time.monotonic() + 10
        while time.monotonic() < until:  # until the listener has taken them all on
            handlers = [
                t
                for t in set(threading.enumerate()) - threads_before
                if "process_request" in t.name
            ]
            if len(handlers) >= len(idle):
                break
            time.sleep(0.05)
        assert ours
        started = time.monotonic()
        listener.close()
        assert time.monotonic() - started < 2
        assert not [t for t in ours if t.is_alive()]
        for s in idle:  # well before their REQUEST_DEADLINE
            s.settimeout(2)
            try:
                assert s.recv(100) == b""
            except ConnectionResetError:
                pass
        assert time.monotonic() - started < REQUEST_DEADLINE - 1
    finally:
        listener.close()
        for s in idle:
            s.close()
