"""A provider answering garbage: a typed error and exit 5, never a traceback, token untouched."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loopauth.emulator import EmulatorServer, OAuthEmulator, Request, Response
from loopauth.store import TokenStore
from loopauth.testing import cli, login, write_config
from loopauth.token import Token


class Garbage(EmulatorServer):
    """Answers every request with whatever the test sets."""

    answer: Callable[[Request], Response] = staticmethod(lambda req: Response(404, "no"))

    def route(self, req: Request) -> Response:
        if self.answer is _slow:
            time.sleep(2)
            return Response(200, {"access_token": "late"})
        return self.answer(req)


def _slow(req: Request) -> Response:
    return Response(200, {})


ANSWERS: dict[str, tuple[Callable[[Request], Response], str]] = {
    "html 502": (
        lambda r: Response(502, "<html><body>Bad gateway</body></html>", {}, "text/html"),
        "answered HTTP 502 with an HTML page",
    ),
    "html 200": (
        lambda r: Response(200, "<!doctype html><html>login</html>", {}, "text/html"),
        "answered HTTP 200 with an HTML page",
    ),
    "empty": (lambda r: Response(200, b""), "answered HTTP 200 with an empty body"),
    "json list": (lambda r: Response(200, "[1, 2]"), "something that is not a JSON object"),
    "truncated": (lambda r: Response(200, '{"access_token": "abc", "exp'), "not a JSON object"),
    "huge": (lambda r: Response(200, b"{" + b" " * (2 << 20) + b"}"), "more than 1 MiB"),
    "nested": (lambda r: Response(200, "[" * 100000 + "]" * 100000), "not a JSON object"),
    "500 json": (lambda r: Response(500, {"detail": "boom"}), "answered HTTP 500 (server error)"),
    "no token": (lambda r: Response(200, {"token_type": "Bearer"}), "has no access_token"),
    "token int": (lambda r: Response(200, {"access_token": 5}), "has no access_token"),
    "expiry text": (
        lambda r: Response(200, {"access_token": "a", "expires_in": "soon"}),
        "expires_in is not a sensible number",
    ),
    "expiry inf": (
        lambda r: Response(200, '{"access_token": "a", "expires_in": 1e999}'),
        "expires_in is not a sensible number",
    ),
    "expiry nan": (
        lambda r: Response(200, '{"access_token": "a", "expires_in": NaN}'),
        "expires_in is not a sensible number",
    ),
    "expiry huge": (
        lambda r: Response(200, {"access_token": "a", "expires_in": 1e308}),
        "expires_in is not a sensible number",
    ),
    "refresh int": (
        lambda r: Response(200, {"access_token": "a", "refresh_token": 7}),
        "refresh_token is not a string",
    ),
    "bad redirect": (lambda r: Response(307, b"", {"Location": "http://[zz/x"}), "failed"),
    "oauth error": (
        lambda r: Response(400, {"error": "invalid_client", "error_description": "<b>gone</b>"}),
        "refused the token request: invalid_client: <b>gone</b>",
    ),
    "slow": (_slow, "did not answer within 0.5 s"),
    "escapes in token": (
        lambda r: Response(200, {"access_token": "a\x1b]52;c;cHduZWQ=\x07"}),
        "access_token has characters a token cannot have",
    ),
    "escapes in error": (
        lambda r: Response(
            400, {"error": "invalid_client", "error_description": "\x1b]0;x\x07gone"}
        ),
        "invalid_client: \\x1b]0;x\\x07gone",
    ),
}


@pytest.fixture
def garbage() -> Iterator[Garbage]:
    with Garbage() as server:
        yield server


def stored(provider: str) -> Token:
    token = Token(
        "old-access",
        provider=provider,
        refresh_token="old-refresh",
        expires_at=time.time() - 10,
        account_id="me",
    )
    TokenStore().save(token)
    return token


@pytest.mark.parametrize("case", list(ANSWERS))
def test_refresh_against_garbage(
    case: str, garbage: Garbage, tmp_path: Path, isolated: Path
) -> None:
    garbage.answer = ANSWERS[case][0]
    cfg = write_config(
        tmp_path / "p.yaml",
        f"""
        providers:
          bad:
            authorization_endpoint: {garbage.url}/authorize
            token_endpoint: {garbage.url}/token
            client_id: c
            http_timeout: 0.5
    """,
    )
    before = stored("bad")
    path = Path(TokenStore().path_for("bad", "me"))
    snapshot = path.read_bytes()
    for command in ("token", "refresh"):
        out = cli("--config", str(cfg), command)
        assert out.returncode == 5, (case, out.stderr)
        assert ANSWERS[case][1] in out.stderr, (case, out.stderr)
        assert "Traceback" not in out.stderr and out.stdout == ""
        assert "old-refresh" not in out.stderr
        assert "\x1b" not in out.stderr and "\x07" not in out.stderr  # escaped, never obeyed
    assert path.read_bytes() == snapshot
    assert TokenStore().find("bad").access_token == before.access_token


def test_garbage_at_discovery_is_a_provider_error(garbage: Garbage, tmp_path: Path) -> None:
    garbage.answer = ANSWERS["nested"][0]
    cfg = write_config(
        tmp_path / "p.yaml",
        f"""
        providers:
          bad:
            issuer: {garbage.url}/deep
            client_id: c
    """,
    )
    out = cli("--config", str(cfg), "login", "--no-browser")
    assert out.returncode == 5 and "discovery failed" in out.stderr
    assert "Traceback" not in out.stderr


def test_discovery_with_another_issuer_is_refused(garbage: Garbage, tmp_path: Path) -> None:
    garbage.answer = lambda r: Response(
        200,
        {
            "issuer": "https://evil.example",
            "authorization_endpoint": "https://e/a",
            "token_endpoint": "https://e/t",
        },
    )
    cfg = write_config(
        tmp_path / "p.yaml",
        f"""
        providers:
          bad:
            issuer: {garbage.url}
            client_id: c
    """,
    )
    out = cli("--config", str(cfg), "login", "--no-browser")
    assert out.returncode == 5 and "names issuer 'https://evil.example'" in out.stderr


def test_garbage_at_code_exchange_fails_the_login(
    garbage: Garbage, emulator: OAuthEmulator, tmp_path: Path, isolated: Path
) -> None:
    garbage.answer = ANSWERS["html 502"][0]
    cfg = write_config(
        tmp_path / "p.yaml",
        f"""
        providers:
          emu:
            issuer: {emulator.url}
            token_endpoint: {garbage.url}/token
            client_id: loopauth-demo
    """,
    )
    result = login("--config", str(cfg), "login")
    assert result.returncode == 5, result.stderr
    assert "answered HTTP 502 with an HTML page" in result.stderr
    assert result.page is not None and result.page.status == 502
    assert not (isolated / "tokens" / "emu").exists() or not list(
        (isolated / "tokens" / "emu").glob("*.json")
    )


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"access_token": 5}',
        '{"access_token": "a", "expires_at": "tomorrow"}',
        '{"access_token": "a", "scopes": 5}',
        '{"access_token": "a", "raw": [1]}',
        '{"access_token": "a", "account_id": 5}',
        '{"access_token": "a", "expires_at": NaN}',
    ],
)
def test_damaged_token_file_is_named(content: str, tmp_path: Path, isolated: Path) -> None:
    cfg = write_config(
        tmp_path / "p.yaml",
        """
        providers:
          emu:
            issuer: https://a.example
            client_id: c
    """,
    )
    stored("emu")
    path = Path(TokenStore().path_for("emu", "me"))
    path.write_text(content)
    for command in ("token", "status", "refresh"):
        out = cli("--config", str(cfg), command)
        assert out.returncode == 6, (command, content, out.stderr)
        assert str(path) in out.stderr and "Traceback" not in out.stderr
    assert path.read_text() == content
    out = cli("--config", str(cfg), "logout")  # nothing to revoke with: it just goes
    assert out.returncode == 0 and "removed the damaged token" in out.stderr, out.stderr
    assert not path.exists()


def test_unwritable_home_fails_before_the_browser(
    tmp_path: Path, config: Path, emulator: OAuthEmulator
) -> None:
    home = tmp_path / "not-a-dir"
    home.write_text("x")
    out = cli("--config", str(config), "login", "--no-browser", env={"LOOPAUTH_HOME": str(home)})
    assert out.returncode == 2 and "cannot store tokens in" in out.stderr
    assert "http" not in out.stderr.split("cannot store")[0]  # no URL was offered
    assert emulator.token_calls == []


def test_output_to_a_directory_is_a_usage_error(config: Path, tmp_path: Path) -> None:
    target = tmp_path / "adir"
    target.mkdir()
    result = login("--config", str(config), "login", "--output", str(target))
    assert result.returncode == 2 and "is a directory" in result.stderr
    assert list(tmp_path.glob("adir*.tmp")) == []


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-3"])
def test_timeout_must_be_finite_and_positive(config: Path, value: str) -> None:
    out = cli("--config", str(config), "login", "--no-browser", "--timeout", value, timeout=20)
    assert out.returncode == 2 and "--timeout must be a positive, finite number" in out.stderr


def test_error_answer_is_kept_as_the_token_response(
    garbage: Garbage, emulator: OAuthEmulator, tmp_path: Path
) -> None:
    import threading

    from loopauth.config import parse
    from loopauth.emulator import browse
    from loopauth.flow import Flow, State

    garbage.answer = ANSWERS["oauth error"][0]
    provider = parse(
        f"providers:\n  e:\n    issuer: {emulator.url}\n"
        f"    token_endpoint: {garbage.url}/token\n    client_id: loopauth-demo\n"
    ).select("e")
    flow = Flow(provider)
    url = flow.start()
    threading.Thread(target=browse, args=(url,)).start()
    assert flow.wait(10) is State.FAILED
    assert flow.token_response == {"error": "invalid_client", "error_description": "<b>gone</b>"}
    assert json.dumps(flow.token_response)


def test_discovered_endpoints_must_be_https(garbage: Garbage, tmp_path: Path) -> None:
    garbage.answer = lambda r: Response(
        200,
        {
            "issuer": garbage.url,
            "authorization_endpoint": f"{garbage.url}/a",
            "token_endpoint": "http://tokens.example/t",
        },
    )
    cfg = write_config(
        tmp_path / "p.yaml",
        f"""
        providers:
          bad:
            issuer: {garbage.url}
            client_id: c
    """,
    )
    out = cli("--config", str(cfg), "login", "--no-browser")
    assert out.returncode == 5
    assert (
        "discovered token_endpoint 'http://tokens.example/t' must use https" in out.stderr
        or "discovered token_endpoint must use https" in out.stderr
    ), out.stderr


def test_redirects_from_the_token_endpoint_are_not_followed(
    garbage: Garbage, tmp_path: Path, isolated: Path
) -> None:
    """A redirect would carry the client secret and refresh token past the https check."""
    with Garbage() as stealer:
        stealer.answer = lambda r: Response(200, {"access_token": "stolen"})
        garbage.answer = lambda r: Response(307, b"", {"Location": f"{stealer.url}/steal"})
        cfg = write_config(
            tmp_path / "p.yaml",
            f"""
            providers:
              bad:
                authorization_endpoint: {garbage.url}/authorize
                token_endpoint: {garbage.url}/token
                client_id: c
                client_secret: ${{SECRET}}
                token_endpoint_auth_method: client_secret_post
        """,
        )
        stored("bad")
        path = Path(TokenStore().path_for("bad", "me"))
        before = path.read_bytes()
        out = cli("--config", str(cfg), "refresh", env={"SECRET": "Sup3rSecretValue"})
        assert out.returncode == 5, out.stderr
        assert "answered with a redirect (HTTP 307)" in out.stderr
        assert "does not follow redirects" in out.stderr
        assert stealer.log == []  # nothing was sent there
    assert path.read_bytes() == before


def bad_provider(tmp_path: Path, garbage: Garbage) -> Path:
    """A providers.yaml whose provider `bad` has its token endpoint on `garbage`."""
    return write_config(
        tmp_path / "p.yaml",
        f"""
        providers:
          bad:
            authorization_endpoint: {garbage.url}/authorize
            token_endpoint: {garbage.url}/token
            client_id: c
    """,
    )


def test_a_rejected_refresh_token_means_log_in_again(
    garbage: Garbage, tmp_path: Path, isolated: Path
) -> None:
    """invalid_grant, from any provider: exit 6 with the login to run, and remembered."""
    garbage.answer = lambda r: Response(
        400, {"error": "invalid_grant", "error_description": "\x1b]0;x\x07revoked"}
    )
    cfg = bad_provider(tmp_path, garbage)
    stored("bad")
    out = cli("--config", str(cfg), "token")
    assert out.returncode == 6, out.stderr
    # Remembered as printable text only: the control characters are gone, not just escaped.
    assert "rejected the refresh token of me (invalid_grant: ?]0;x?revoked)" in out.stderr
    assert out.stderr.rstrip().endswith("run: loopauth login bad --account me")
    assert "old-refresh" not in out.stderr and "\x1b" not in out.stderr
    assert len(garbage.log) == 1
    for command in ("token", "refresh"):  # known dead: nobody asks the provider again
        again = cli("--config", str(cfg), command)
        assert again.returncode == 6 and "run: loopauth login bad --account me" in again.stderr
    assert len(garbage.log) == 1
    status = cli("--config", str(cfg), "status")
    assert "dead: log in again" in status.stdout and "\x1b" not in status.stdout
    kept = TokenStore().find("bad", "me")
    assert (kept.access_token, kept.refresh_token) == ("old-access", "old-refresh")


def test_a_rejection_that_echoes_the_refresh_token_is_not_remembered_with_it(
    garbage: Garbage, tmp_path: Path, isolated: Path
) -> None:
    garbage.answer = lambda r: Response(
        400, {"error": "invalid_grant", "error_description": "old-refresh is revoked"}
    )
    cfg = bad_provider(tmp_path, garbage)
    stored("bad")
    out = cli("--config", str(cfg), "token")
    assert out.returncode == 6 and "old-refresh" not in out.stderr
    assert TokenStore().find("bad", "me").dead == "invalid_grant"
    again = cli("--config", str(cfg), "status", "--json")
    assert "old-refresh" not in again.stdout


def test_a_server_error_keeps_the_providers_own_code_and_request_id() -> None:
    """TikTok's 5xx envelope: its code and request_id are what its support asks for."""
    from loopauth.errors import ProviderError
    from loopauth.transport import request_json

    class Failing(EmulatorServer):
        def route(self, req: Request) -> Response:
            body = {"code": 36009003, "message": "Internal error", "request_id": "2024X1"}
            return Response(500, body)

    with Failing() as server, pytest.raises(ProviderError) as info:
        request_json("GET", f"{server.url}/api/v2/token/refresh", "TikTok", timeout=5)
    assert str(info.value) == (
        "TikTok answered HTTP 500 (server error): code 36009003, message Internal error, "
        "request_id 2024X1"
    )
