"""The `google` plugin through the CLI against the Google emulator, and its offline facts."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from loopauth.config import parse
from loopauth.emulator import Response
from loopauth.oauth import issued_by
from loopauth.plugins.google import GOOGLE_ISSUER, published_metadata
from loopauth.plugins.google.emulator import (
    DESKTOP_CLIENT_ID,
    DESKTOP_CLIENT_SECRET,
    GOOGLE_USERS,
    TV_CLIENT_ID,
    TV_CLIENT_SECRET,
    GoogleEmulator,
)
from loopauth.store import TokenStore
from loopauth.testing import DeviceLogin, cli, login, write_config
from loopauth.testing import post_form as post
from loopauth.token import Token

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = Path(__file__).parent / "data" / "google-openid-configuration.json"
ADA, GRACE = GOOGLE_USERS
EMAIL_URL = "https://www.googleapis.com/auth/userinfo.email"
PROFILE_URL = "https://www.googleapis.com/auth/userinfo.profile"
DRIVE = "https://www.googleapis.com/auth/drive.readonly"
ENV = {"GOOGLE_CLIENT_SECRET": DESKTOP_CLIENT_SECRET, "GOOGLE_TV_CLIENT_SECRET": TV_CLIENT_SECRET}


@pytest.fixture
def start_google() -> Iterator[Callable[..., GoogleEmulator]]:
    """Start Google emulators (options as given); each is stopped after the test."""
    started: list[GoogleEmulator] = []

    def start(**options: Any) -> GoogleEmulator:
        started.append(GoogleEmulator(**options).start())
        return started[-1]

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture
def google(start_google: Callable[..., GoogleEmulator]) -> GoogleEmulator:
    """A Google emulator whose id_tokens name the issuer without its scheme."""
    return start_google(id_token_iss="bare", device_interval=1)


def test_the_emulator_is_registered_as_google() -> None:
    import loopauth.plugins.google as plugin

    registered: dict[str, Any] = {}
    plugin.register_emulators(register=registered.__setitem__)
    assert registered == {"google": GoogleEmulator}


def google_config(tmp_path: Path, emulator: GoogleEmulator, *extra: str) -> Path:
    """Providers `google` (Desktop client, plus `extra` lines) and `google-tv` (TV client)."""
    lines = [
        "default: google",
        "providers:",
        "  google:",
        "    plugin: google",
        f"    issuer: {emulator.url}",
        f"    client_id: {DESKTOP_CLIENT_ID}",
        "    client_secret: ${GOOGLE_CLIENT_SECRET}",
        *(f"    {line}" for line in extra),
        "  google-tv:",
        "    plugin: google",
        f"    issuer: {emulator.url}",
        f"    client_id: {TV_CLIENT_ID}",
        "    client_secret: ${GOOGLE_TV_CLIENT_SECRET}",
    ]
    return write_config(tmp_path / "providers.yaml", "\n".join(lines) + "\n")


def run(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("--config", str(cfg), *args, env=ENV)


def stored(provider: str = "google", account: str = ADA.sub) -> Token:
    return TokenStore().read(provider, account)


def logged_in(cfg: Path) -> Token:
    """Log in to `google` as the first account offered (Ada); return the stored token."""
    result = login("--config", str(cfg), "login", env=ENV)
    assert result.returncode == 0, result.stderr
    assert DESKTOP_CLIENT_SECRET not in result.stderr + result.stdout
    return stored()


class ConnectionCounter:
    """A loopback port that counts the connections made to it (and drops each one)."""

    def __enter__(self) -> ConnectionCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


# -- the published document and the authorization URL, offline -------------------------------


def test_the_shipped_document_is_googles_published_one() -> None:
    shipped = resources.files("loopauth.plugins.google").joinpath("openid-configuration.json")
    assert shipped.read_bytes() == PUBLISHED.read_bytes()
    assert dict(published_metadata()) == json.loads(PUBLISHED.read_text())


def test_the_authorization_url_is_built_offline_from_client_id_and_secret(tmp_path: Path) -> None:
    """Nothing but plugin, client_id and client_secret: no request before the browser opens."""
    cfg = write_config(
        tmp_path / "providers.yaml",
        f"""
        providers:
          google:
            plugin: google
            client_id: {DESKTOP_CLIENT_ID}
            client_secret: ${{GOOGLE_CLIENT_SECRET}}
        """,
    )
    env = {**ENV, "NO_PROXY": "", "no_proxy": ""}
    with ConnectionCounter() as proxy:  # every request to Google would have to go through it
        for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
            env[name] = env[name.lower()] = proxy.url
        result = login(
            "--config", str(cfg), "login", "--timeout", "1", decision=None, env=env, timeout=30
        )
        assert result.returncode == 4, result.stderr  # nobody answered: it timed out waiting
        assert proxy.connections == 0
    doc = json.loads(PUBLISHED.read_text())
    assert result.url is not None
    url = urllib.parse.urlsplit(result.url)
    params = dict(urllib.parse.parse_qsl(url.query))
    assert f"{url.scheme}://{url.netloc}{url.path}" == doc["authorization_endpoint"]
    assert params["response_type"] in doc["response_types_supported"]
    assert params["code_challenge_method"] == "S256"
    assert params["code_challenge_method"] in doc["code_challenge_methods_supported"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", params["code_challenge"])
    assert params["scope"].split() == ["openid", "email"]
    assert set(params["scope"].split()) <= set(doc["scopes_supported"])
    assert params["client_id"] == DESKTOP_CLIENT_ID
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", params["redirect_uri"])
    assert params["access_type"] == "offline" and params["prompt"] == "consent"
    assert len(params["state"]) >= 43
    assert DESKTOP_CLIENT_SECRET not in result.stderr + result.stdout


def test_auth_params_override_or_drop_the_refresh_token_parameters(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "providers.yaml",
        f"""
        providers:
          google:
            plugin: google
            client_id: {DESKTOP_CLIENT_ID}
            client_secret: {DESKTOP_CLIENT_SECRET}
            scope: openid email profile
            auth_params: {{prompt: "", login_hint: ada@example.test}}
        """,
    )
    result = login("--config", str(cfg), "login", "--timeout", "1", decision=None)
    assert result.returncode == 4 and result.url is not None, result.stderr
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(result.url).query))
    assert "prompt" not in params and params["access_type"] == "offline"
    assert params["login_hint"] == "ada@example.test"


def test_importing_the_plugin_reads_no_document() -> None:
    code = (
        "import sys, loopauth.plugins.google as g;"
        "print(g.published_metadata.cache_info().currsize, 'loopauth.emulator' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "False"]


def test_a_missing_client_secret_says_why_google_needs_it(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "providers.yaml",
        f"providers:\n  google:\n    plugin: google\n    client_id: {DESKTOP_CLIENT_ID}\n",
    )
    out = cli("--config", str(cfg), "token")
    assert out.returncode == 2, out.stderr
    assert "providers.google.client_secret: is required" in out.stderr
    assert "Desktop app client" in out.stderr and "not treated as a secret" in out.stderr


def test_init_prints_the_entry_that_docs_show_and_it_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = cli("init", "google", "--print")
    assert out.returncode == 0, out.stderr
    entry = out.stdout
    assert "Desktop app" in entry and "any port" in entry
    assert "client_id: ${GOOGLE_CLIENT_ID}" in entry
    assert "client_secret: ${GOOGLE_CLIENT_SECRET}" in entry
    assert "scope: [openid, email]" in entry
    assert entry in (ROOT / "docs" / "google.md").read_text()
    monkeypatch.setenv("GOOGLE_CLIENT_ID", "1-x.apps.googleusercontent.com")
    monkeypatch.setenv("GOOGLE_CLIENT_SECRET", "s")
    provider = parse("providers:\n" + entry, "p.yaml").select("google")
    assert provider.get("issuer") == GOOGLE_ISSUER
    assert provider.auth_method == "client_secret_post"


# -- hooks, offline --------------------------------------------------------------------------


def google_provider(issuer: str = GOOGLE_ISSUER) -> Any:
    text = (
        f"providers:\n  google:\n    plugin: google\n    issuer: {issuer}\n"
        f"    client_id: {DESKTOP_CLIENT_ID}\n    client_secret: s\n"
    )
    return parse(text, "p.yaml").select("google")


def test_an_id_token_may_name_the_issuer_without_its_scheme_a_redirect_may_not() -> None:
    provider = google_provider()
    claims = {"sub": "1", "aud": DESKTOP_CLIENT_ID}
    for iss in ("https://accounts.google.com", "accounts.google.com"):
        assert issued_by(provider, iss, {**claims, "iss": iss})
    for iss in ("http://accounts.google.com", "accounts.google.com.evil.test", "google.com", ""):
        assert not issued_by(provider, iss, {**claims, "iss": iss})
    assert issued_by(provider, "https://accounts.google.com", {})
    assert not issued_by(provider, "accounts.google.com", {})


def test_email_and_profile_count_as_granted_under_their_url_names() -> None:
    provider = google_provider()
    token = Token("a", scopes=["openid", EMAIL_URL, PROFILE_URL])
    holds = provider.type.scope_granted
    assert all(holds(provider, s, token) for s in ("openid", "email", "profile", EMAIL_URL))
    assert not holds(provider, DRIVE, token)
    assert not holds(provider, "email", Token("a", scopes=["openid", PROFILE_URL]))
    assert holds(provider, EMAIL_URL, Token("a", scopes=["openid", "email"]))


# -- browser login, token, refresh, logout against the emulator -----------------------------


def test_login_names_the_account_from_the_id_token_with_a_bare_issuer(
    tmp_path: Path, google: GoogleEmulator
) -> None:
    cfg = google_config(tmp_path, google)
    result = login("--config", str(cfg), "login", env=ENV)
    assert result.returncode == 0, result.stderr
    assert f"Logged in to google as {ADA.email} ({ADA.sub})" in result.stderr
    assert "fewer scopes" not in result.stderr
    assert DESKTOP_CLIENT_SECRET not in result.stderr + result.stdout
    assert ("GET", "/.well-known/openid-configuration") in google.log  # issuer overridden
    assert ("POST", "/token") in google.log
    assert google.client_auth == ["post"]  # client_secret_post, as Google's libraries
    token = stored()
    assert token.refresh_token and token.scopes == ["openid", EMAIL_URL]
    claims = token.extra["id_token_claims"]
    assert claims["iss"] == google.url.partition("://")[2]  # the bare form was accepted
    out = run(cfg, "token")
    assert out.returncode == 0 and out.stdout.strip() == token.access_token


def test_client_secret_basic_works_too(tmp_path: Path, google: GoogleEmulator) -> None:
    cfg = google_config(tmp_path, google, "token_endpoint_auth_method: client_secret_basic")
    assert logged_in(cfg).refresh_token
    assert run(cfg, "refresh").returncode == 0
    assert google.client_auth == ["basic", "basic"]


def test_an_id_token_from_another_issuer_is_refused(tmp_path: Path) -> None:
    class Foreign(GoogleEmulator):
        def _id_token_claims(self, *args: Any) -> dict[str, Any]:
            return {**super()._id_token_claims(*args), "iss": "accounts.google.com.evil.test"}

    with Foreign() as emulator:
        result = login("--config", str(google_config(tmp_path, emulator)), "login", env=ENV)
    assert result.returncode == 5, result.stderr
    assert "the id_token was issued by 'accounts.google.com.evil.test'" in result.stderr
    assert TokenStore().accounts("google") == {}


def test_a_redirect_iss_must_be_the_issuer_itself_and_may_be_absent(tmp_path: Path) -> None:
    class BareRedirectIss(GoogleEmulator):
        def _redirect(self, uri: str, params: dict[str, str | None]) -> Response:
            return super()._redirect(uri, {**params, "iss": self.issuer.partition("://")[2]})

    with BareRedirectIss(send_iss=False) as emulator:
        result = login("--config", str(google_config(tmp_path, emulator)), "login", env=ENV)
    assert result.returncode == 5, result.stderr
    assert "possible mix-up attack" in result.stderr
    with GoogleEmulator(send_iss=False) as emulator:
        result = login("--config", str(google_config(tmp_path, emulator)), "login", env=ENV)
    assert result.returncode == 0, result.stderr


def test_refresh_keeps_the_refresh_token_google_does_not_send_again(
    tmp_path: Path, google: GoogleEmulator
) -> None:
    cfg = google_config(tmp_path, google)
    before = logged_in(cfg)
    answer = tmp_path / "refresh.json"
    out = run(cfg, "refresh", "--output", str(answer))
    assert out.returncode == 0, out.stderr
    raw = json.loads(answer.read_text())
    assert "refresh_token" not in raw and raw["scope"] == f"openid {EMAIL_URL}"
    after = stored()
    assert after.refresh_token == before.refresh_token
    assert after.access_token != before.access_token
    assert google.client_auth == ["post", "post"]
    assert run(cfg, "token").stdout.strip() == after.access_token


def test_a_second_login_gets_a_refresh_token_again_thanks_to_prompt_consent(
    tmp_path: Path, start_google: Callable[..., GoogleEmulator]
) -> None:
    google = start_google()  # id_token iss: bare, then the URL, by turns
    cfg = google_config(tmp_path, google)
    first = logged_in(cfg)
    second = logged_in(cfg)
    assert second.refresh_token and second.refresh_token != first.refresh_token
    assert [t.extra["id_token_claims"]["iss"] for t in (first, second)] == [
        google.url.partition("://")[2],
        google.url,
    ]
    # Without prompt=consent Google gives a refresh token at the first consent only.
    plain = google_config(tmp_path, google, "auth_params: {prompt: select_account}")
    third = logged_in(plain)
    assert third.refresh_token is None


def test_hd_lets_in_only_accounts_of_that_workspace_domain(
    tmp_path: Path, start_google: Callable[..., GoogleEmulator]
) -> None:
    """The scripted user picks the first account offered: Ada (no domain), then Grace."""
    assert GRACE.hd and not ADA.hd
    said = []
    for users, code in (([ADA, GRACE], 3), ([GRACE, ADA], 0)):
        google = start_google(users=users)
        cfg = google_config(tmp_path, google, f"auth_params: {{hd: {GRACE.hd}}}")
        result = login("--config", str(cfg), "login", env=ENV)
        assert result.returncode == code, result.stderr
        assert f"hd={GRACE.hd}" in str(result.url)
        said.append(result.stderr)
    assert f"{ADA.email} is not in the domain {GRACE.hd} (auth_params hd)" in said[0]
    assert "nothing was stored" in said[0]
    assert list(TokenStore().accounts("google")) == [GRACE.sub]
    no_openid = google_config(tmp_path, google, "auth_params: {hd: x.test}", "scope: email")
    out = run(no_openid, "token")
    assert out.returncode == 2 and "hd needs `openid` in scope" in out.stderr


def test_logout_revokes_at_google(tmp_path: Path, google: GoogleEmulator) -> None:
    cfg = google_config(tmp_path, google)
    token = logged_in(cfg)
    out = run(cfg, "logout")
    assert out.returncode == 0, out.stderr
    assert "revoked the token at the provider and removed it" in out.stderr
    assert google.revoked == ["refresh_token"]
    assert DESKTOP_CLIENT_SECRET not in out.stderr and str(token.refresh_token) not in out.stderr
    assert TokenStore().accounts("google") == {}
    # Google ends the whole grant: the access token is dead too.
    request = urllib.request.Request(
        f"{google.url}/v1/userinfo", headers={"Authorization": f"Bearer {token.access_token}"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as err:
        opener.open(request, timeout=5)
    assert err.value.code == 401


def test_the_scope_warning_knows_googles_names_but_not_a_withheld_scope(
    tmp_path: Path, start_google: Callable[..., GoogleEmulator]
) -> None:
    google = start_google(withheld_scopes=frozenset({DRIVE}))
    cfg = google_config(
        tmp_path,
        google,
        f"scope: openid email profile {DRIVE}",
        "required_scopes: [email, profile]",
    )
    result = login("--config", str(cfg), "login", env=ENV)
    assert result.returncode == 0, result.stderr
    assert f"granted fewer scopes than asked for: without {DRIVE}." in result.stderr
    assert stored().scopes == ["openid", EMAIL_URL, PROFILE_URL]


# -- device flow -----------------------------------------------------------------------------


def wait_for(condition: Callable[[], object]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_device_login_with_verification_url_and_428_while_pending(
    tmp_path: Path,
    start_google: Callable[..., GoogleEmulator],
    device_login: Callable[..., DeviceLogin],
) -> None:
    google = start_google(device_interval=1, device_id_token=False)
    cfg = google_config(tmp_path, google)
    run_ = device_login("--config", str(cfg), "login", "google-tv", "--device", env=ENV)
    address, user_code = run_.shown()
    assert address == f"{google.url}/device"
    wait_for(lambda: google.device_polls)  # at least one 428 authorization_pending first
    status, page = post(
        address, {"user_code": user_code, "account": GRACE.sub, "decision": "allow"}
    )
    assert status == 200 and "Device connected" in page
    code, err = run_.finish()
    assert code == 0, err
    # No id_token in this answer: the account is named from Google's userinfo.
    assert f"Logged in to google-tv as {GRACE.email} ({GRACE.sub})" in err
    assert ("GET", "/v1/userinfo") in google.log
    answers = [answer for _, answer in google.device_polls]
    assert answers[0] == "authorization_pending" and answers[-1] == "token"
    token = stored("google-tv", GRACE.sub)
    assert token.refresh_token and TV_CLIENT_SECRET not in err


def test_device_login_denied_with_403_exits_3(
    tmp_path: Path, google: GoogleEmulator, device_login: Callable[..., DeviceLogin]
) -> None:
    run_ = device_login(
        "--config", str(google_config(tmp_path, google)), "login", "google-tv", "--device", env=ENV
    )
    address, user_code = run_.shown()
    post(address, {"user_code": user_code, "decision": "deny"})
    code, err = run_.finish()
    assert code == 3, err
    assert "access denied (access_denied" in err
    assert TokenStore().accounts("google-tv") == {}


def test_device_login_with_a_desktop_client_says_the_client_type_is_wrong(
    tmp_path: Path, google: GoogleEmulator
) -> None:
    out = run(google_config(tmp_path, google), "login", "google", "--device")
    assert out.returncode == 5, out.stderr
    assert "invalid_client" in out.stderr and "TVs and Limited Input devices" in out.stderr


def test_the_emulator_polls_as_google_does(start_google: Callable[..., GoogleEmulator]) -> None:
    """verification_url; 428 pending, 403 slow_down and access_denied; polls need the secret."""
    google = start_google(device_interval=5)  # a second poll at once: too soon

    def device_code() -> dict[str, Any]:
        form = {"client_id": TV_CLIENT_ID, "scope": "openid email"}
        status, answer = post(f"{google.url}/device/code", form)
        assert status == 200, answer
        return dict(answer)

    token_url = f"{google.url}/token"

    def poll(code: dict[str, Any], **changes: str | None) -> tuple[int, Any]:
        form = {
            "client_id": TV_CLIENT_ID,
            "client_secret": TV_CLIENT_SECRET,
            "device_code": code["device_code"],
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            **changes,
        }
        return post(token_url, {k: v for k, v in form.items() if v is not None})

    first = device_code()
    assert first["verification_url"] == f"{google.url}/device"
    assert "verification_uri" not in first and "verification_uri_complete" not in first
    assert poll(first, client_secret=None) == (
        400,
        {"error": "invalid_request", "error_description": "client_secret is missing."},
    )
    status, body = poll(first)
    assert (status, body["error"]) == (428, "authorization_pending")
    status, body = poll(first)  # again at once: too fast
    assert (status, body["error"]) == (403, "slow_down")
    second = device_code()
    post(f"{google.url}/device", {"user_code": second["user_code"], "decision": "deny"})
    status, body = poll(second)
    assert (status, body["error"]) == (403, "access_denied")
    status, body = post(
        f"{google.url}/device/code", {"client_id": TV_CLIENT_ID, "scope": f"openid {DRIVE}"}
    )
    assert (status, body["error"]) == (400, "invalid_scope")
