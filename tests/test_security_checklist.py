"""The rules of native-app-security.md that other test files do not already pin (see
docs/security.md for the whole list, rule by rule)."""

from __future__ import annotations

import errno
import hmac
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from loopauth import flow as flow_module
from loopauth import oauth
from loopauth.config import parse
from loopauth.emulator import OAuthEmulator, browse
from loopauth.flow import Flow, State
from loopauth.provider import BASE_SETTINGS
from loopauth.testing import login, write_config


def provider(emu: OAuthEmulator, redirect: str = "http://127.0.0.1:0/callback") -> object:
    return parse(
        f"providers:\n  e:\n    issuer: {emu.url}\n    client_id: loopauth-demo\n"
        f"    redirect_uri: {redirect}\n"
    ).select("e")


@pytest.fixture
def started(emulator: OAuthEmulator) -> Iterator[Flow]:
    flow = Flow(provider(emulator))  # type: ignore[arg-type]
    flow.start()
    yield flow
    flow.cancel()


def listening_addresses(port: int) -> set[str]:
    """Local addresses in LISTEN state on `port`, as the kernel reports them (Linux)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                raw = bytes.fromhex(address)
                if width == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:  # four little-endian 32-bit words
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
def test_listener_is_bound_to_loopback_only_as_the_os_sees_it(emulator: OAuthEmulator) -> None:
    for redirect, expected in (
        ("http://127.0.0.1:0/callback", {"127.0.0.1"}),
        ("http://localhost:0/callback", {"127.0.0.1", "::1"}),
    ):
        flow = Flow(provider(emulator, redirect))  # type: ignore[arg-type]
        flow.start()
        try:
            seen = listening_addresses(urlsplit(flow.redirect_uri).port or 0)
        finally:
            flow.cancel()
        if "::1" in expected and not socket.has_ipv6:
            expected = {"127.0.0.1"}
        assert seen == expected, seen
        assert not seen & {"0.0.0.0", "::"}


def test_listener_bind_is_exclusive(started: Flow) -> None:
    port = urlsplit(started.redirect_uri).port
    for server in started._listener._servers:  # type: ignore[union-attr]
        sock = server.socket
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0
        if hasattr(socket, "SO_REUSEPORT"):
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
    intruder = socket.socket()
    intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    with intruder, pytest.raises(OSError) as info:
        intruder.bind(("127.0.0.1", port))
    # Windows answers SO_EXCLUSIVEADDRUSE with WSAEACCES (10013) or WSAEADDRINUSE (10048).
    assert info.value.errno in (errno.EADDRINUSE, errno.EACCES, 10013, 10048)


def test_state_is_compared_in_constant_time(started: Flow, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(flow_module.hmac, "compare_digest", recording)
    state = parse_qs(urlsplit(started.authorization_url).query)["state"][0]
    browse(f"{started.redirect_uri}?code=x&state=wrong-guess")
    assert started.state is State.WAITING_FOR_REDIRECT
    assert (b"wrong-guess", state.encode()) in calls


def test_state_and_verifier_are_fresh_per_attempt(emulator: OAuthEmulator) -> None:
    p = provider(emulator)
    first = oauth.authorization_request(p, "http://127.0.0.1:1/cb")  # type: ignore[arg-type]
    second = oauth.authorization_request(p, "http://127.0.0.1:1/cb")  # type: ignore[arg-type]
    assert first.state != second.state and first.verifier != second.verifier
    assert len(first.state) >= 22  # >= 128 bits of URL-safe base64
    query = parse_qs(urlsplit(first.url).query)
    assert query["code_challenge_method"] == ["S256"]  # never downgraded to plain


def test_default_timeout_is_finite() -> None:
    assert BASE_SETTINGS["timeout"].default == 300.0
    assert BASE_SETTINGS["http_timeout"].default == 30.0


def test_a_failed_exchange_is_never_retried(tmp_path: Path) -> None:
    from loopauth.emulator import EmulatorServer, Request, Response

    class Flaky(EmulatorServer):
        def route(self, req: Request) -> Response:
            return Response(503, "<html>busy</html>", {}, "text/html")

    with OAuthEmulator() as emu, Flaky() as flaky:
        cfg = write_config(
            tmp_path / "p.yaml",
            f"""
            providers:
              e:
                issuer: {emu.url}
                token_endpoint: {flaky.url}/token
                client_id: loopauth-demo
        """,
        )
        result = login("--config", str(cfg), "login")
    assert result.returncode == 5
    assert flaky.log == [("POST", "/token")]  # one attempt: a code is single use


def test_concurrent_refreshes_happen_once(tmp_path: Path) -> None:
    """Several processes find the token expiring: one refreshes, the others re-read (lock)."""
    with OAuthEmulator(access_token_lifetime=30, rotate_refresh_tokens=True) as emu:
        cfg = write_config(
            tmp_path / "p.yaml",
            f"""
            providers:
              e:
                issuer: {emu.url}
                client_id: loopauth-demo
                refresh_leeway: 10
        """,
        )
        assert login("--config", str(cfg), "login").returncode == 0
        from loopauth.store import TokenStore

        token = TokenStore().find("e")  # 5 s left of 30: inside the leeway (capped at 15 s)
        token.expires_at, token.obtained_at = time.time() + 5, time.time() - 25
        TokenStore().save(token)
        emu.access_token_lifetime = 3600  # the refreshed token is fresh for the others
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "loopauth", "--config", str(cfg), "token"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        outs = [p.communicate(60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    assert len({o for o, _ in outs}) == 1  # everyone printed the same new token
    grants = [c["grant_type"] for c in emu.token_calls]
    # 5 s left is within the leeway for the first, and the others find a fresh token.
    assert grants == ["authorization_code", "refresh_token"], grants


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_output_file_is_private(tmp_path: Path, config: Path) -> None:
    target = tmp_path / "seed.json"
    assert login("--config", str(config), "login", "--output", str(target)).returncode == 0
    assert target.stat().st_mode & 0o777 == 0o600


def test_login_page_redirects_nowhere_else(started: Flow) -> None:
    page = browse(started.authorization_url or "")
    assert page.status == 200
    assert started.wait(5) is State.SUCCEEDED
    hops = [urlsplit(h).hostname for h in page.hops]
    assert set(hops) <= {"127.0.0.1", "localhost"}
    assert "Referrer-Policy" in page.headers and page.headers["Cache-Control"] == "no-store"


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def _closes_soon(port: int) -> bool:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if _refused(port):
            return True
        time.sleep(0.05)
    return False


class SlowTokens(OAuthEmulator):
    """Answers the token endpoint two seconds late, so two callbacks overlap the exchange."""

    def route(self, req: object) -> object:
        if getattr(req, "path", "") == "/token":
            time.sleep(2)
        return super().route(req)  # type: ignore[arg-type]


def test_state_is_single_use_even_for_simultaneous_callbacks() -> None:
    with SlowTokens() as emu:
        flow = Flow(provider(emu))  # type: ignore[arg-type]
        flow.start()
        redirect = browse(flow.authorization_url or "", stop_at=flow.redirect_uri).url
        statuses: list[int] = []

        def deliver() -> None:
            try:
                with urllib.request.urlopen(redirect, timeout=10) as resp:
                    statuses.append(resp.status)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
            except urllib.error.URLError:
                statuses.append(0)  # only if this thread started after the flow had closed

        both = [threading.Thread(target=deliver) for _ in range(2)]
        for t in both:
            t.start()
        for t in both:
            t.join(15)
        # One exchange; the other tab is told "already finished" (409).
        assert sorted(statuses) in ([200, 409], [0, 200]), statuses
        assert flow.wait(5) is State.SUCCEEDED
        assert len(emu.token_calls) == 1


def test_port_closes_once_the_response_has_arrived(emulator: OAuthEmulator) -> None:
    flow = Flow(provider(emulator))  # type: ignore[arg-type]
    flow.start()
    port = urlsplit(flow.redirect_uri).port or 0
    assert not _refused(port)
    assert browse(flow.authorization_url or "").status == 200
    assert flow.wait(5) is State.SUCCEEDED
    assert _closes_soon(port)  # refused: nothing listens any more (not a 409 page)


def test_ctrl_c_in_wait_cancels_and_closes_the_port(emulator: OAuthEmulator) -> None:
    import _thread

    flow = Flow(provider(emulator))  # type: ignore[arg-type]
    flow.start()
    port = urlsplit(flow.redirect_uri).port or 0
    threading.Timer(0.3, _thread.interrupt_main).start()  # Ctrl+C, on every platform
    with pytest.raises(KeyboardInterrupt):
        flow.wait(30)
    assert flow.state is State.CANCELLED
    assert _closes_soon(port)


def test_account_label_is_escaped_on_the_success_page() -> None:
    from loopauth import pages

    page = pages.success("shop<i>", '<img src="https://evil.example/x">')
    assert "<img" not in page and "&lt;img src=&quot;https://evil.example/x&quot;&gt;" in page
    assert "shop&lt;i&gt;" in page


def test_every_listener_answer_carries_the_security_headers(started: Flow) -> None:
    port = urlsplit(started.redirect_uri).port
    base = started.redirect_uri
    probes = {
        404: urllib.request.Request(f"http://127.0.0.1:{port}/favicon.ico"),
        400: urllib.request.Request(f"{base}?code=x&state=wrong"),
        405: urllib.request.Request(base, data=b"x", method="POST"),
        421: urllib.request.Request(base, headers={"Host": f"evil.example:{port}"}),
    }
    for status, request in probes.items():
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=5)
        assert info.value.code == status
        headers = {k.lower(): v for k, v in info.value.headers.items()}
        assert headers["cache-control"] == "no-store", status
        assert headers["referrer-policy"] == "no-referrer", status
        assert headers["x-content-type-options"] == "nosniff", status
        assert "default-src 'none'" in headers["content-security-policy"], status


def test_connections_past_the_cap_are_closed_at_once(
    started: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    import select

    from loopauth import listener

    # A long request deadline, so that only the cap can close a connection during the test.
    monkeypatch.setattr(listener, "REQUEST_DEADLINE", 60.0)
    port = urlsplit(started.redirect_uri).port
    extra = 10
    socks = [
        socket.create_connection(("127.0.0.1", port), timeout=10)
        for _ in range(listener.MAX_CONNECTIONS + extra)
    ]
    deadline = time.monotonic() + 10
    readable: list[socket.socket] = []
    while time.monotonic() < deadline:  # until the listener has accepted (and judged) them all
        readable, _, _ = select.select(socks, [], [], 0.2)  # readable here means closed (EOF)
        if len(readable) >= extra:
            time.sleep(0.3)
            readable, _, _ = select.select(socks, [], [], 0)
            break
    assert len(readable) == extra, len(readable)  # exactly MAX_CONNECTIONS were kept open
    for s in socks:
        s.close()
