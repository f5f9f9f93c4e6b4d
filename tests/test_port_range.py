"""`redirect_port_range`: the first free port of a range, and busy ports as clear errors."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from loopauth.emulator import OAuthEmulator
from loopauth.testing import cli, free_port, login, write_config


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def bind(address: str, port: int) -> socket.socket:
    """Hold `address:port` the way another program would."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((address, port))
    s.listen()
    return s


def free_run(count: int) -> int:
    """Return the first of `count` consecutive ports free right now on both loopback stacks."""
    stacks = ["127.0.0.1", "::1"] if has_ipv6_loopback() else ["127.0.0.1"]
    for _ in range(50):
        first = free_port()
        if first + count > 65535:
            continue
        try:
            with ExitStack() as held:
                for port in range(first, first + count):
                    for address in stacks:
                        held.enter_context(bind(address, port))
        except OSError:
            continue
        return first
    raise AssertionError(f"no {count} consecutive free ports")


@contextmanager
def held(*addresses: tuple[str, int]) -> Iterator[None]:
    """Keep these loopback ports busy for the duration."""
    with ExitStack() as stack:
        for address, port in addresses:
            stack.enter_context(bind(address, port))
        yield


def provider_yaml(tmp_path: Path, emulator: OAuthEmulator, redirect: str, ports: str) -> Path:
    return write_config(
        tmp_path / "range.yaml",
        f"""
        providers:
          emu:
            issuer: {emulator.url}
            client_id: loopauth-demo
            redirect_uri: {redirect}
            redirect_port_range: {ports}
    """,
    )


def redirect_port(url: str | None) -> int | None:
    assert url is not None
    return urlsplit(parse_qs(urlsplit(url).query)["redirect_uri"][0]).port


def test_the_first_free_port_of_the_range_is_taken_and_sent(
    tmp_path: Path, emulator: OAuthEmulator
) -> None:
    first = free_run(4)
    cfg = provider_yaml(tmp_path, emulator, "http://127.0.0.1/callback", f"{first}-{first + 3}")
    with held(("127.0.0.1", first), ("127.0.0.1", first + 1)):
        run = login("--config", str(cfg), "login")
    assert run.returncode == 0, run.stderr
    assert redirect_port(run.url) == first + 2  # the provider is told the port listened on
    assert "Logged in to emu" in run.stderr
    assert run.page is not None and run.page.status == 200
    assert run.page.url.startswith(f"http://127.0.0.1:{first + 2}/callback?")  # served there


@pytest.mark.skipif(not has_ipv6_loopback(), reason="needs an IPv6 loopback")
def test_localhost_needs_the_port_free_on_both_stacks(
    tmp_path: Path, emulator: OAuthEmulator
) -> None:
    first = free_run(4)
    # A list mixing a port and a range; the first is busy on ::1 only, the second on 127.0.0.1.
    ports = f"[{first}, '{first + 1}-{first + 3}']"
    cfg = provider_yaml(tmp_path, emulator, "http://localhost/callback", ports)
    with held(("::1", first), ("127.0.0.1", first + 1)):
        run = login("--config", str(cfg), "login")
    assert run.returncode == 0, run.stderr
    assert redirect_port(run.url) == first + 2


def test_an_exhausted_range_names_the_range_and_what_to_do(
    tmp_path: Path, emulator: OAuthEmulator
) -> None:
    first = free_run(3)
    cfg = provider_yaml(tmp_path, emulator, "http://127.0.0.1/callback", f"{first}-{first + 2}")
    with held(*[("127.0.0.1", p) for p in range(first, first + 3)]):
        out = cli("--config", str(cfg), "login", "--no-browser", timeout=30)
    assert out.returncode == 2, out.stderr
    assert f"redirect_port_range ({first}-{first + 2}) on 127.0.0.1 is already in use" in (
        out.stderr
    )
    assert "widen redirect_port_range" in out.stderr and "register" in out.stderr
    assert "Traceback" not in out.stderr and "http://" not in out.stderr  # no URL to open
    assert emulator.token_calls == []


def test_a_busy_fixed_port_names_the_port_and_what_to_do(
    tmp_path: Path, emulator: OAuthEmulator
) -> None:
    port = free_port()
    cfg = write_config(
        tmp_path / "fixed.yaml",
        f"""
        providers:
          emu:
            issuer: {emulator.url}
            client_id: loopauth-demo
            redirect_uri: http://127.0.0.1:{port}/callback
    """,
    )
    with held(("127.0.0.1", port)):
        out = cli("--config", str(cfg), "login", "--no-browser", timeout=30)
    assert out.returncode == 2, out.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in out.stderr
    assert "end it and log in again, or change the port in redirect_uri" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("redirect", "ports", "expected"),
    [
        (
            "http://127.0.0.1:8400/callback",
            "8400-8409",
            "redirect_port_range: needs a redirect_uri without a port, but redirect_uri has "
            "port 8400: write redirect_uri: http://127.0.0.1/callback",
        ),
        ("http://127.0.0.1/callback", "8409-8400", "range 8409-8400 runs backwards"),
        ("http://127.0.0.1/callback", "0-10", "port 0 is not between 1 and 65535"),
        ("http://127.0.0.1/callback", "1024-9999", "names more than 1000 ports"),
        ("http://127.0.0.1/callback", "[8400, eighty]", "'eighty' is not a port or a range"),
        ("http://127.0.0.1/callback", "{a: 1}", "must be a port (8400), a range (8400-8409)"),
        ("http://127.0.0.1/callback", "${PORTS}", "holds something that is not a port"),
    ],
)
def test_bad_ranges_are_config_errors(
    tmp_path: Path, emulator: OAuthEmulator, redirect: str, ports: str, expected: str
) -> None:
    cfg = provider_yaml(tmp_path, emulator, redirect, ports)
    out = cli("--config", str(cfg), "login", "--no-browser", env={"PORTS": "hunter2"}, timeout=30)
    assert out.returncode == 2, out.stderr
    assert expected in out.stderr and "range.yaml:" in out.stderr
    assert "hunter2" not in out.stderr  # a ${VAR}'s value is never echoed
    assert "Traceback" not in out.stderr
