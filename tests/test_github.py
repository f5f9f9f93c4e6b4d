"""The `github` plugin, driven through the CLI against the GitHub emulator (and offline)."""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loopauth.config import parse
from loopauth.emulator import RecordingServer, Response, browse
from loopauth.plugins.github.emulator import (
    CLIENT_ID,
    CLIENT_SECRET,
    EXPIRES_IN,
    REFRESH_EXPIRES_IN,
    GitHubEmulator,
)
from loopauth.testing import DeviceLogin, cli, login, write_config

ROOT = Path(__file__).resolve().parents[1]
METADATA = json.loads((ROOT / "tests" / "data" / "github-oauth-metadata.json").read_text())
DOC = ROOT / "docs" / "github.md"
SECRET_VAR = "GH_TEST_SECRET"

Setup = Callable[..., tuple[GitHubEmulator, Path]]


def token_files(home: Path) -> list[Path]:
    return sorted((home / "tokens").rglob("*.json"))


def stored(home: Path) -> dict[str, Any]:
    [path] = token_files(home)
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def entry(name: str, emulator: GitHubEmulator, *, secret: bool = True, extra: str = "") -> str:
    """A providers.yaml entry whose endpoints are the emulator's (explicit ones win)."""
    lines = [
        f"  {name}:",
        "    plugin: github",
        f"    client_id: {CLIENT_ID}",
        f"    authorization_endpoint: {emulator.url}/login/oauth/authorize",
        f"    token_endpoint: {emulator.url}/login/oauth/access_token",
        f"    device_authorization_endpoint: {emulator.url}/login/device/code",
        f"    api_base_url: {emulator.url}",
    ]
    if secret:
        lines.append(f"    client_secret: ${{{SECRET_VAR}}}")
    return "\n".join(lines) + "\n" + extra


@pytest.fixture
def github(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    start_emulator: Callable[..., Any],
) -> Setup:
    """Start the registered `github` emulator (options as given); write a config naming it."""
    monkeypatch.setenv(SECRET_VAR, CLIENT_SECRET)

    def setup(
        *, secret: bool = True, extra: str = "", **options: Any
    ) -> tuple[GitHubEmulator, Path]:
        emulator = start_emulator("github", **{"device_interval": 1, **options})
        assert isinstance(emulator, GitHubEmulator)
        text = "providers:\n" + entry("github", emulator, secret=secret, extra=extra)
        path = tmp_path / "providers.yaml"
        path.write_text(text)
        monkeypatch.setenv("LOOPAUTH_CONFIG", str(path))
        return emulator, path

    return setup


def post(url: str, form: dict[str, str], accept: str | None = None) -> tuple[int, str, str]:
    """POST a form as any client would; return (status, content type, body)."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if accept:
        headers["Accept"] = accept
    request = urllib.request.Request(
        url, data=urllib.parse.urlencode(form).encode(), headers=headers
    )
    try:
        # No proxy from the environment for the loopback emulator.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


# -- offline: the authorization URL and the settings -----------------------------------------


def test_authorization_url_is_built_offline_as_github_documents(
    tmp_path: Path, isolated: Path
) -> None:
    config = write_config(
        tmp_path / "gh.yaml",
        f"""
        providers:
          github:
            plugin: github
            client_id: Ov23liExampleClient1
            client_secret: ${{{SECRET_VAR}}}
        """,
    )
    env = {SECRET_VAR: "not-sent-anywhere-0123456789"}
    # Nothing listens for GitHub here: the URL is printed, then the login times out (exit 4).
    out = cli(
        "--config", str(config), "login", "github", "--no-browser", "--timeout", "0.3", env=env
    )
    assert out.returncode == 4, out.stderr
    [url] = [line for line in out.stderr.splitlines() if line.startswith("https://")]
    parts = urllib.parse.urlsplit(url)
    assert urllib.parse.urlunsplit(parts._replace(query="")) == METADATA["authorization_endpoint"]
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    assert all(len(values) == 1 for values in query.values())
    params = {key: values[0] for key, values in query.items()}
    # Every parameter is one GitHub documents (no response_type: GitHub lists none).
    assert set(params) <= set(METADATA["authorization_request_parameters"]), params
    assert params["client_id"] == "Ov23liExampleClient1"
    assert params["scope"] == "read:user"
    assert len(params["state"]) >= 43
    assert params["code_challenge_method"] in METADATA["code_challenge_methods_supported"]
    assert params["code_challenge_method"] == "S256"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", params["code_challenge"])  # GitHub: 43 chars
    redirect = urllib.parse.urlsplit(params["redirect_uri"])
    # The loopback callback GitHub takes on any port (register http://127.0.0.1/callback).
    assert (redirect.scheme, redirect.hostname, redirect.path) == ("http", "127.0.0.1", "/callback")
    assert env[SECRET_VAR] not in out.stderr + out.stdout
    assert token_files(isolated) == []


def test_endpoints_follow_the_host_and_explicit_ones_win() -> None:
    config = parse(
        textwrap.dedent(
            """
        providers:
          dotcom:
            plugin: github
            client_id: a
          ghes:
            plugin: github
            client_id: b
            client_secret: s
            host: github.example.com:8443
          residency:
            plugin: github
            client_id: c
            host: acme.ghe.com
          mixed:
            plugin: github
            client_id: d
            host: github.example.com
            token_endpoint: https://proxy.example.com/token
            """
        )
    )
    dotcom = config.providers["dotcom"].settings
    for key in ("authorization_endpoint", "token_endpoint", "device_authorization_endpoint"):
        assert dotcom[key] == METADATA[key]
    assert dotcom["api_base_url"] == "https://api.github.com"
    assert dotcom["token_endpoint_auth_method"] == "none"  # no secret: the device flow only
    assert dotcom["pkce"] is True and dotcom["scope"] == ["read:user"]
    assert config.providers["dotcom"].get("revocation_endpoint") is None
    ghes = config.providers["ghes"].settings
    assert ghes["authorization_endpoint"] == "https://github.example.com:8443/login/oauth/authorize"
    assert ghes["token_endpoint"] == "https://github.example.com:8443/login/oauth/access_token"
    assert (
        ghes["device_authorization_endpoint"] == "https://github.example.com:8443/login/device/code"
    )
    assert ghes["api_base_url"] == "https://github.example.com:8443/api/v3"
    assert ghes["token_endpoint_auth_method"] == "client_secret_post"
    assert config.providers["residency"].settings["api_base_url"] == "https://api.acme.ghe.com"
    mixed = config.providers["mixed"].settings
    assert mixed["token_endpoint"] == "https://proxy.example.com/token"
    assert mixed["authorization_endpoint"] == "https://github.example.com/login/oauth/authorize"
    for host in (
        "http://github.example.com",  # http only for loopback
        "github.example.com/enterprise",
        "user:pw@github.example.com",
    ):
        broken = parse(
            f"providers:\n  g:\n    plugin: github\n    client_id: a\n    host: {host}\n"
        )
        assert "g" not in broken.providers
        assert "host: " in str(broken.errors["g"]) and "is not a GitHub host" in str(
            broken.errors["g"]
        )
    bare = parse("providers:\n  g:\n    plugin: github\n")
    assert "client_id: is required" in str(bare.errors["g"])


def test_init_print_is_the_entry_docs_github_md_shows(isolated: Path) -> None:
    out = cli("init", "github", "--print")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "plugin: github" in text and "client_id: ${GITHUB_CLIENT_ID}" in text
    assert "client_secret: ${GITHUB_CLIENT_SECRET:-}" in text and "read:user" in text
    assert "https://github.com/settings/developers" in text
    assert "http://127.0.0.1/callback" in text
    assert text.strip() in DOC.read_text()


# -- the browser login -----------------------------------------------------------------------


def test_browser_login_names_the_account_from_user_and_the_token_never_expires(
    github: Setup, isolated: Path
) -> None:
    emulator, _ = github()
    done = login("login", "github")
    assert done.returncode == 0, done.stderr
    assert "Logged in to github as octocat (583231); token saved to" in done.stderr
    assert done.url is not None and "response_type" not in done.url
    # GET /user went to api_base_url with GitHub's headers, once.
    assert emulator.user_calls == [
        {"accept": "application/vnd.github+json", "x-github-api-version": "2022-11-28"}
    ]
    token = stored(isolated)
    assert token["access_token"].startswith("gho_")
    assert token["account_id"] == "583231" and token["account_label"] == "octocat"
    assert token["expires_at"] is None and token["refresh_token"] is None
    assert token["scopes"] == ["read:user"]
    # A classic OAuth-app token: `token` keeps returning it, nothing is ever refreshed.
    calls = len(emulator.token_calls)
    for _ in range(2):
        out = cli("token", "github")
        assert out.returncode == 0 and out.stdout.strip() == token["access_token"]
    refresh = cli("refresh", "github")
    assert refresh.returncode == 0, refresh.stderr
    assert "does not expire and came without a refresh token; nothing to refresh" in (
        refresh.stderr
    )
    everything = cli("refresh", "--all", "--force", "--json")
    assert everything.returncode == 0, everything.stderr
    summary = json.loads(everything.stdout)
    assert (summary["refreshed"], summary["not_due"]) == (0, 1)  # never due, even forced
    assert len(emulator.token_calls) == calls  # nothing was sent
    assert cli("token", "github").stdout.strip() == token["access_token"]
    # `loopauth api` sends GitHub's headers too, to api_base_url only.
    api = cli("api", "github", "/user")
    assert api.returncode == 0, api.stderr
    assert json.loads(api.stdout)["login"] == "octocat"
    assert emulator.user_calls[-1]["x-github-api-version"] == "2022-11-28"


def test_expiring_tokens_refresh_rotates_them_and_a_dead_refresh_token_says_so(
    github: Setup, isolated: Path
) -> None:
    emulator, _ = github(expiring_tokens=True)
    assert login("login", "github").returncode == 0
    first = stored(isolated)
    assert first["refresh_token"].startswith("ghr_")
    assert first["expires_at"] - first["obtained_at"] == pytest.approx(EXPIRES_IN, abs=5)
    refresh_left = first["refresh_expires_at"] - first["obtained_at"]
    assert refresh_left == pytest.approx(REFRESH_EXPIRES_IN, abs=5)
    assert cli("token", "github").stdout.strip() == first["access_token"]  # fresh for 8 h
    out = cli("refresh", "github")
    assert out.returncode == 0, out.stderr
    assert "Refreshed github (octocat)" in out.stderr
    second = stored(isolated)
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    # GitHub: a used refresh token and the access token before it both stop working.
    assert first["access_token"] not in emulator.issued_access_tokens()
    assert cli("token", "github").stdout.strip() == second["access_token"]
    # The refresh token dies at GitHub (expired after six months, or revoked).
    emulator.revoke_refresh_tokens()
    dead = cli("refresh", "github")
    assert dead.returncode == 6, dead.stderr
    assert "github rejected the refresh token of octocat (bad_refresh_token" in dead.stderr
    assert "loopauth login github --account 583231" in dead.stderr
    calls = len(emulator.token_calls)
    again = cli("refresh", "github")  # remembered: GitHub is not asked again
    assert again.returncode == 6 and "bad_refresh_token" in again.stderr
    assert len(emulator.token_calls) == calls


def test_form_encoded_answers_are_read_when_github_ignores_accept(
    github: Setup, isolated: Path
) -> None:
    emulator, _ = github(ignore_accept=True, expiring_tokens=True)
    # What GitHub answers by default, JSON asked for or not: a form, errors with HTTP 200.
    status, ctype, body = post(
        f"{emulator.url}/login/oauth/access_token",
        {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "code": "nope"},
        accept="application/json",
    )
    assert (status, ctype.split(";")[0]) == (200, "application/x-www-form-urlencoded")
    assert dict(urllib.parse.parse_qsl(body))["error"] == "bad_verification_code"
    done = login("login", "github")
    assert done.returncode == 0, done.stderr
    assert "as octocat (583231)" in done.stderr
    token = stored(isolated)
    # Numbers came as text ("28800"), scopes as "read:user": read all the same.
    assert token["raw"]["expires_in"] == str(EXPIRES_IN)
    assert token["expires_at"] - token["obtained_at"] == pytest.approx(EXPIRES_IN, abs=5)
    assert token["scopes"] == ["read:user"]
    out = cli("refresh", "github")
    assert out.returncode == 0, out.stderr
    assert stored(isolated)["access_token"] != token["access_token"]


def test_github_error_answers_with_http_200_are_clear_errors(
    github: Setup, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator, _ = github()
    url = f"{emulator.url}/login/oauth/access_token"
    for form, error in (
        (
            {"client_id": CLIENT_ID, "client_secret": "wrong", "code": "x"},
            "incorrect_client_credentials",
        ),
        (
            {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "code": "x"},
            "bad_verification_code",
        ),
        (
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "grant_type": "refresh_token",
                "refresh_token": "ghr_x",
            },
            "bad_refresh_token",
        ),
    ):
        status, ctype, body = post(url, form, accept="application/json")
        assert (status, ctype.split(";")[0]) == (200, "application/json")
        assert json.loads(body)["error"] == error
    # Without Accept: GitHub's default, a form.
    status, ctype, body = post(url, {"client_id": CLIENT_ID, "client_secret": "wrong", "code": "x"})
    assert ctype.split(";")[0] == "application/x-www-form-urlencoded"
    assert "error=incorrect_client_credentials" in body
    # Through the CLI: a wrong secret is refused at the code exchange, with what to check.
    monkeypatch.setenv(SECRET_VAR, "a-wrong-secret-0123456789")
    done = login("login", "github")
    assert done.returncode == 5, done.stderr
    assert "github refused the token request: incorrect_client_credentials" in done.stderr
    assert "check both" in done.stderr
    assert "a-wrong-secret-0123456789" not in done.stderr and "Traceback" not in done.stderr
    assert token_files(isolated) == []


def test_browser_login_without_client_secret_is_refused_before_the_browser(
    github: Setup, isolated: Path, tmp_path: Path
) -> None:
    emulator, _ = github(secret=False)
    marker = tmp_path / "browser-opened"
    browser = tmp_path / "browser.py"
    browser.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\n")
    # A browser that would leave a mark: it is never started.
    out = cli("login", "github", env={"BROWSER": f"{sys.executable} {browser} %s"}, input="")
    assert out.returncode == 2, out.stderr
    assert "github: the browser login needs client_secret" in out.stderr
    assert "loopauth login github --device" in out.stderr
    assert "http" not in out.stderr.split("needs client_secret")[0]  # no URL was printed
    time.sleep(0.3)  # a browser helper started anyway would have written by now
    assert not marker.exists()
    assert emulator.log == [] and token_files(isolated) == []
    # The same browser does open once the secret is there: the check above means something.
    config = tmp_path / "with-secret.yaml"
    config.write_text("providers:\n" + entry("github", emulator))
    opened = cli(
        "--config",
        str(config),
        "login",
        "github",
        "--timeout",
        "1",
        env={"BROWSER": f"{sys.executable} {browser} %s"},
        input="",
    )
    assert opened.returncode == 4, opened.stderr
    assert marker.exists()


def test_providers_says_what_a_github_provider_without_secret_lacks(github: Setup) -> None:
    full = f"  full:\n    plugin: github\n    client_id: x\n    client_secret: ${{{SECRET_VAR}}}\n"
    github(secret=False, extra=full)
    out = cli("providers")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    at = lines.index("  github: plugin github")
    assert lines[at + 1].startswith("    lacks: client_secret: the browser login needs it")
    assert "loopauth login github --device works without it" in lines[at + 1]
    at = lines.index("  full: plugin github")
    assert not lines[at + 1].startswith("    lacks:")
    listing = json.loads(cli("providers", "--json").stdout)
    rows = {row["name"]: row for row in listing["providers"]}
    assert len(rows["github"]["lacks"]) == 1 and rows["full"]["lacks"] == []
    assert "GitHub" in listing["provider_types"]["github"]


def test_logout_removes_the_token_locally_and_says_how_to_revoke_it(
    github: Setup, isolated: Path
) -> None:
    emulator, _ = github()
    assert login("login", "github").returncode == 0
    before = list(emulator.log)
    out = cli("logout", "github")
    assert out.returncode == 0, out.stderr
    assert (
        "Logged out of github (octocat): removed the token locally only (GitHub has no RFC 7009 "
        "revocation endpoint" in out.stderr
    )
    assert "github.com/settings/applications" in out.stderr
    assert "DELETE /applications/{client_id}/token" in out.stderr
    assert token_files(isolated) == [] and emulator.log == before  # nothing sent


# -- the device flow -------------------------------------------------------------------------


def test_device_login_without_secret_honours_slow_down_and_refreshes(
    github: Setup, device_login: Callable[..., DeviceLogin], isolated: Path
) -> None:
    emulator, _ = github(secret=False, expiring_tokens=True, slow_down_polls=1)
    run = device_login("login", "github", "--device")
    uri, user_code = run.shown()
    assert uri == f"{emulator.url}/login/device"
    assert re.fullmatch(r"[A-Z]{4}-[A-Z]{4}", user_code)
    page = browse(f"{uri}?user_code={user_code}", account="7654321")
    assert "Device connected" in page.body
    code, err = run.finish()
    assert code == 0, err
    assert "Logged in to github as hubot (7654321)" in err
    assert "has the code in it" not in err  # GitHub sends no verification_uri_complete
    assert [answer for _, answer in emulator.device_polls] == ["slow_down", "token"]
    [gap] = [b - a for a, b in itertools.pairwise(t for t, _ in emulator.device_polls)]
    assert gap >= 1 + 5, gap  # the interval GitHub's slow_down answer named
    token = stored(isolated)
    assert token["account_label"] == "hubot" and token["refresh_token"].startswith("ghr_")
    # A device-flow token refreshes without the client secret, as GitHub allows.
    out = cli("refresh", "github")
    assert out.returncode == 0, out.stderr
    assert stored(isolated)["access_token"] != token["access_token"]


# -- naming the account, scopes, the host setting --------------------------------------------


def test_a_failing_user_call_is_a_warning_not_a_failed_login(
    github: Setup, isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator, _ = github()
    page = Response(200, "<html><body>Sign in</body></html>", content_type="text/html")
    with RecordingServer(page) as api:
        config = tmp_path / "api.yaml"
        config.write_text(
            "providers:\n" + entry("github", emulator).replace(emulator.url + "\n", api.url + "\n")
        )
        monkeypatch.setenv("LOOPAUTH_CONFIG", str(config))
        done = login("login", "github")
        assert done.returncode == 0, done.stderr
        assert "github: could not name the account" in done.stderr
        assert "an HTML page" in done.stderr and "stored as account 'default'" in done.stderr
        assert "Traceback" not in done.stderr
        [seen] = api.seen
        assert seen.path == "/user"  # the token went to api_base_url only
    assert stored(isolated)["account_id"] == "default"


def test_scopes_are_compared_as_github_normalizes_them(github: Setup, isolated: Path) -> None:
    github(withheld_scopes=frozenset({"gist"}))
    done = login("login", "github", "--scope", "user user:email gist")
    assert done.returncode == 0, done.stderr
    # GitHub keeps `user` (which covers user:email); the user unticked gist.
    assert stored(isolated)["scopes"] == ["user"]
    warning = [line for line in done.lines if "granted fewer scopes" in line]
    assert len(warning) == 1 and "without gist" in warning[0], done.stderr


def test_host_setting_points_every_endpoint_and_the_api_at_one_server(
    github: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    emulator, _ = github()
    config = write_config(
        tmp_path / "ghes.yaml",
        f"""
        providers:
          ghes:
            plugin: github
            host: {emulator.url}
            client_id: {CLIENT_ID}
            client_secret: ${{{SECRET_VAR}}}
        """,
    )
    monkeypatch.setenv("LOOPAUTH_CONFIG", str(config))
    done = login("login", "ghes")
    assert done.returncode == 0, done.stderr
    assert "Logged in to ghes as octocat (583231)" in done.stderr
    assert ("GET", "/api/v3/user") in emulator.log  # GitHub Enterprise Server's API path
    assert os.environ[SECRET_VAR] not in done.stderr
