"""The `microsoft` plugin (Microsoft Entra ID) against its emulator, driven through the CLI.

Endpoints and issuers are checked against Microsoft's own discovery documents (tests/data, copies
of the stored ones the research quotes); logins, refreshes, device logins and logouts run
`python -m loopauth` in subprocesses against MicrosoftEmulator, with the scripted user.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from loopauth import oauth
from loopauth.config import parse
from loopauth.emulator import BrowseResult, browse
from loopauth.plugins.microsoft import (
    CONSUMERS_TENANT,
    MICROSOFT,
    RESERVED_SCOPES,
    TENANT_TEMPLATE,
)
from loopauth.plugins.microsoft.emulator import (
    CONTOSO,
    FABRIKAM,
    MicrosoftEmulator,
    default_users,
)
from loopauth.provider import Provider
from loopauth.testing import DeviceLogin, cli, free_port
from loopauth.testing import post_form as post
from loopauth.token import Token

DATA = Path(__file__).resolve().parent / "data"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "microsoft.md"
COMMON_DOC = json.loads((DATA / "microsoft-common-openid-configuration.json").read_text())
TENANT_DOC = json.loads((DATA / "microsoft-tenant-openid-configuration.json").read_text())
DOC_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"  # the tenant of the stored tenant document
GLOBAL = "https://login.microsoftonline.com"
ADA, GRACE, PAT = default_users()
NO_REVOCATION = "Microsoft Entra ID has no token revocation endpoint"

Start = Callable[..., MicrosoftEmulator]


@pytest.fixture
def entra() -> Iterator[Start]:
    """Start Microsoft emulators (device codes polled every second); stopped at the end."""
    started: list[MicrosoftEmulator] = []

    def start(**options: Any) -> MicrosoftEmulator:
        emulator = MicrosoftEmulator(**{"device_interval": 1, **options}).start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


def entry(name: str, emulator: MicrosoftEmulator | None, **settings: Any) -> str:
    """One provider entry of plugin microsoft (pointed at the emulator when one is given)."""
    lines = [f"  {name}:", "    plugin: microsoft"]
    if emulator is not None:
        lines.append(f"    authority_host: {emulator.url}")
    settings.setdefault("client_id", "loopauth-demo")
    lines += [f"    {key}: {json.dumps(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def config(tmp_path: Path, *entries: str) -> Path:
    path = tmp_path / "providers.yaml"
    path.write_text("providers:\n" + "".join(entries), encoding="utf-8")
    return path


def load(tmp_path: Path, **settings: Any) -> Provider:
    """Parse one `work` provider in-process, as the CLI would."""
    text = "providers:\n" + entry("work", None, **settings)
    loaded = parse(text, str(tmp_path / "providers.yaml"))
    assert not loaded.errors, loaded.errors
    return loaded.providers["work"]


class Run:
    """What a scripted CLI login did."""

    def __init__(
        self, returncode: int, stderr: str, url: str | None, page: BrowseResult | None
    ) -> None:
        self.returncode, self.stderr, self.url, self.page = returncode, stderr, url, page


def sign_in(
    cfg: Path,
    name: str,
    *args: str,
    account: str | None = None,
    decision: str | None = "allow",
    env: dict[str, str] | None = None,
) -> Run:
    """`loopauth login NAME --no-browser`, the scripted user picking `account` on the page."""
    command = ["--config", str(cfg), "login", name, *args, "--no-browser"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopauth", *command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=None if env is None else {**os.environ, **env},
    )
    assert proc.stderr is not None and proc.stdout is not None
    lines: list[str] = []
    url: str | None = None
    result: dict[str, BrowseResult] = {}
    worker: threading.Thread | None = None
    for line in proc.stderr:
        lines.append(line)
        if url is None and line.startswith("http"):
            url = line.strip()
            if decision is not None:

                def play(target: str = url, choice: str = decision) -> None:
                    result["page"] = browse(target, decision=choice, account=account)

                worker = threading.Thread(target=play)
                worker.start()
    proc.stdout.read()
    proc.wait(60)
    if worker is not None:
        worker.join(30)
    return Run(proc.returncode, "".join(lines), url, result.get("page"))


def stored(home: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((home / "tokens").rglob("*.json"))]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def claims_of(id_token: str) -> dict[str, Any]:
    import base64

    payload = id_token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


def discovery_paths(emulator: MicrosoftEmulator) -> list[str]:
    return [path for _, path in emulator.log if "well-known" in path]


# -- settings: endpoints and issuers, as Microsoft publishes them ------------------------------

# Keys of Entra's documents that depend on the tenant or describe the protocol; the others
# (kerberos, rbac_url, cloud_* names, tenant_region_scope) are nothing loopauth uses.
COMPARED = (
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "device_authorization_endpoint",
    "jwks_uri",
    "end_session_endpoint",
    "userinfo_endpoint",
    "response_types_supported",
    "response_modes_supported",
    "scopes_supported",
    "token_endpoint_auth_methods_supported",
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
    "claims_supported",
    "request_uri_parameter_supported",
)


@pytest.mark.parametrize(("tenant", "document"), [("common", COMMON_DOC), (DOC_TENANT, TENANT_DOC)])
def test_the_built_metadata_is_microsofts_published_document(
    tmp_path: Path, tenant: str, document: dict[str, Any]
) -> None:
    provider = load(tmp_path, tenant=tenant)
    assert MICROSOFT.metadata is not None
    built = MICROSOFT.metadata(provider)
    assert built is not None
    assert {key: built.get(key) for key in COMPARED} == {key: document[key] for key in COMPARED}
    for key in ("issuer", "authorization_endpoint", "token_endpoint"):
        assert provider.settings[key] == document[key]
    device = "device_authorization_endpoint"
    assert provider.settings[device] == document[device]
    # Entra publishes no revocation endpoint; loopauth's logout must not find one.
    assert "revocation_endpoint" not in built and "revocation_endpoint" not in document


def test_tenant_kinds_national_clouds_and_explicit_settings(tmp_path: Path) -> None:
    def issuer(**settings: Any) -> str:
        return str(load(tmp_path, **settings).settings["issuer"])

    assert issuer(tenant="organizations") == f"{GLOBAL}/{TENANT_TEMPLATE}/v2.0"
    assert issuer(tenant="contoso.onmicrosoft.com") == f"{GLOBAL}/{TENANT_TEMPLATE}/v2.0"
    assert issuer(tenant="consumers") == f"{GLOBAL}/{CONSUMERS_TENANT}/v2.0"
    # Upper case is accepted and written as tokens write it.
    assert issuer(tenant=CONTOSO.id.upper()) == f"{GLOBAL}/{CONTOSO.id}/v2.0"
    us = load(tmp_path, tenant="organizations", authority_host="https://login.microsoftonline.us/")
    assert us.settings["token_endpoint"] == (
        "https://login.microsoftonline.us/organizations/oauth2/v2.0/token"
    )
    assert us.settings["issuer"] == f"https://login.microsoftonline.us/{TENANT_TEMPLATE}/v2.0"
    china = load(tmp_path, tenant=CONTOSO.id, authority_host="https://login.chinacloudapi.cn")
    assert china.settings["authorization_endpoint"].startswith("https://login.chinacloudapi.cn/")
    assert china.settings["issuer"] == (
        f"https://login.partner.microsoftonline.cn/{CONTOSO.id}/v2.0"
    )
    mine = load(tmp_path, token_endpoint="https://proxy.example/token", issuer="https://id.example")
    assert mine.settings["token_endpoint"] == "https://proxy.example/token"
    assert mine.settings["issuer"] == "https://id.example"
    assert mine.settings["authorization_endpoint"] == f"{GLOBAL}/common/oauth2/v2.0/authorize"
    # A public client by default; a web app's secret goes in the form body.
    assert load(tmp_path).auth_method == "none"
    assert load(tmp_path, client_secret="s3cret").auth_method == "client_secret_post"
    # The reserved scopes are always asked for, after the configured ones.
    assert load(tmp_path, scope="Mail.Read").settings["scope"] == ["Mail.Read", *RESERVED_SCOPES]


def test_bad_settings_are_named(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        entry("tenantless", None, tenant="contoso"),
        entry("path", None, tenant="common", authority_host="https://login.microsoftonline.com/x"),
        entry("plain", None, authority_host="http://login.microsoftonline.com"),
        entry("both", None, client_secret="s3cret", token_endpoint_auth_method="none"),
        "  noid:\n    plugin: microsoft\n",
    )
    out = cli("--config", str(cfg), "providers")
    assert out.returncode == 2
    text = out.stdout + out.stderr
    assert "tenant: 'contoso' is not a tenant: use common" in text
    assert "a tenant ID (a GUID such as" in text and "contoso.onmicrosoft.com" in text
    assert "authority_host: must be the sign-in host alone" in text
    assert "must use https" in text
    assert "remove the secret (a public client must not use one)" in text
    assert "client_id: is required: the Application (client) ID" in text
    assert "s3cret" not in text
    login = cli("--config", str(cfg), "login", "tenantless", "--no-browser")
    assert login.returncode == 2 and "'contoso' is not a tenant" in login.stderr


def test_init_writes_the_documented_entry() -> None:
    out = cli("init", "microsoft", "--print")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "tenant: common" in text and "client_id: ${MICROSOFT_CLIENT_ID}" in text
    assert "scope: [openid, profile, offline_access, User.Read]" in text
    assert "'Mobile and desktop applications'" in text and "http://localhost" in text
    assert "client_secret" not in text
    # docs/microsoft.md shows the same block, so the page cannot drift from the plugin.
    assert text in DOCS.read_text(encoding="utf-8")


# -- the authorization URL, built offline -------------------------------------------------------


def test_authorization_urls_are_built_offline_from_a_client_id(tmp_path: Path) -> None:
    """Only a client id: each tenant kind's URL, PKCE S256, and not one request sent for it."""
    tenants = {
        "common": COMMON_DOC,
        "organizations": COMMON_DOC,
        "consumers": COMMON_DOC,
        "contoso.onmicrosoft.com": COMMON_DOC,
        DOC_TENANT: TENANT_DOC,
    }
    names = {tenant: f"t{i}" for i, tenant in enumerate(tenants)}
    cfg = config(
        tmp_path,
        *(
            entry(names[t], None, client_id="00000000-1111-2222-3333-444444444444", tenant=t)
            for t in tenants
        ),
    )
    # Every HTTPS request would go to a proxy that is not there: a discovery request fails.
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"HTTPS_PROXY": dead, "https_proxy": dead, "NO_PROXY": "", "no_proxy": ""}
    runs: dict[str, Run] = {}

    def run(tenant: str) -> None:
        runs[tenant] = sign_in(cfg, names[tenant], "--timeout", "1", decision=None, env=env)

    def run_with_scope() -> None:
        # `login --scope` replaces the scopes for once; the reserved ones still go along.
        runs["--scope"] = sign_in(
            cfg, names["common"], "--scope", "Mail.Read", "--timeout", "1", decision=None, env=env
        )

    threads = [threading.Thread(target=run, args=(t,)) for t in tenants]
    threads.append(threading.Thread(target=run_with_scope))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for tenant, document in tenants.items():
        done = runs[tenant]
        assert done.returncode == 4, done.stderr  # timed out waiting: nothing failed before
        assert done.url is not None
        parts = urllib.parse.urlsplit(done.url)
        base = urllib.parse.urlunsplit(parts._replace(query=""))
        template = document["authorization_endpoint"]
        if document is COMMON_DOC:
            template = template.replace("/common/", f"/{tenant}/")
        assert base == template
        query = urllib.parse.parse_qs(parts.query)
        assert all(len(v) == 1 for v in query.values())
        q = {k: v[0] for k, v in query.items()}
        assert q["client_id"] == "00000000-1111-2222-3333-444444444444"
        assert q["response_type"] in document["response_types_supported"]
        assert "query" in document["response_modes_supported"]  # the default response_mode
        assert "response_mode" not in q
        # Entra's documents list no code_challenge_methods_supported; its protocol page
        # says S256 and plain are supported and S256 is what apps should send.
        assert "code_challenge_methods_supported" not in document
        assert q["code_challenge_method"] == "S256"
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", q["code_challenge"])
        assert re.fullmatch(r"http://localhost:[1-9][0-9]*", q["redirect_uri"])
        scopes = q["scope"].split()
        assert scopes == ["openid", "profile", "offline_access", "User.Read"]
        assert set(RESERVED_SCOPES) <= set(document["scopes_supported"])
        assert len(q["state"]) >= 43 and "iss" not in q
    once = runs["--scope"]
    assert once.returncode == 4 and once.url is not None, once.stderr
    asked = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(once.url).query))["scope"]
    assert asked.split() == ["Mail.Read", "openid", "profile", "offline_access"]


# -- browser logins against the emulator ------------------------------------------------------


def test_common_login_names_the_account_then_token_refresh_and_logout(
    entra: Start, tmp_path: Path, isolated: Path
) -> None:
    emulator = entra()
    cfg = config(tmp_path, entry("work", emulator))
    done = sign_in(cfg, "work")
    assert done.returncode == 0, done.stderr
    assert f"Logged in to work as {ADA.email} ({ADA.sub})" in done.stderr
    assert "fewer scopes" not in done.stderr  # offline_access is shown by the refresh token
    [saved] = stored(isolated)
    assert saved["account_label"] == "ada@contoso.onmicrosoft.com"
    assert saved["scopes"] == ["openid", "profile", "User.Read"]  # as Entra answered
    claims = saved["extra"]["id_token_claims"]
    assert claims["iss"] == f"{emulator.url}/{CONTOSO.id}/v2.0" and claims["tid"] == CONTOSO.id
    assert claims["preferred_username"] == ADA.email and "email" not in claims
    first_refresh = saved["refresh_token"]
    assert first_refresh

    token = cli("--config", str(cfg), "token", "work")
    assert token.returncode == 0, token.stderr
    assert token.stdout.strip() == saved["access_token"]
    assert token.stdout.strip() in emulator.issued_access_tokens()

    refreshed = cli("--config", str(cfg), "refresh", "work")
    assert refreshed.returncode == 0, refreshed.stderr
    [after] = stored(isolated)
    assert after["refresh_token"] and after["refresh_token"] != first_refresh  # rotated
    assert after["access_token"] != saved["access_token"]
    assert after["account_label"] == ADA.email
    grants = [call["grant_type"] for call in emulator.token_calls]
    assert grants == ["authorization_code", "refresh_token"]
    again = cli("--config", str(cfg), "token", "work")
    assert again.returncode == 0 and again.stdout.strip() == after["access_token"]

    out = cli("--config", str(cfg), "logout", "work")
    assert out.returncode == 0, out.stderr
    assert "removed the token locally only (" + NO_REVOCATION in out.stderr
    assert stored(isolated) == []
    # The discovery document was built by the plugin: the emulator's was never asked for.
    assert discovery_paths(emulator) == []
    assert not [path for _, path in emulator.log if "revoke" in path]


def test_personal_account_through_common_and_a_tenant_gets_its_users_only(
    entra: Start, tmp_path: Path
) -> None:
    emulator = entra()
    cfg = config(tmp_path, entry("work", emulator))
    done = sign_in(cfg, "work", account=PAT.sub)
    assert done.returncode == 0, done.stderr
    assert f"Logged in to work as {PAT.email} ({PAT.sub})" in done.stderr
    # Each tenant path offers only its own people on the sign-in page.
    offered = {}
    for tenant in ("common", "organizations", "consumers", CONTOSO.domain, FABRIKAM.id):
        query = urllib.parse.urlencode(
            {
                "client_id": "loopauth-demo",
                "response_type": "code",
                "redirect_uri": "http://localhost:1234",
                "scope": "openid profile",
                "code_challenge": "A" * 43,
                "code_challenge_method": "S256",
            }
        )
        status, page = get(f"{emulator.url}/{tenant}/oauth2/v2.0/authorize?{query}")
        assert status == 200, page
        offered[tenant] = {u.name for u in (ADA, GRACE, PAT) if u.name in page}
    assert offered == {
        "common": {ADA.name, GRACE.name, PAT.name},
        "organizations": {ADA.name, GRACE.name},
        "consumers": {PAT.name},
        CONTOSO.domain: {ADA.name},
        FABRIKAM.id: {GRACE.name},
    }


def test_organizations_refuses_a_personal_accounts_token(
    entra: Start, tmp_path: Path, isolated: Path
) -> None:
    # The id_token names the personal-accounts tenant (tid and iss agree): fine for `common`,
    # refused by `organizations`, which is for work and school accounts only.
    emulator = entra(id_token_tenant=CONSUMERS_TENANT)
    cfg = config(
        tmp_path,
        entry("work", emulator, tenant="organizations"),
        entry("anyone", emulator, tenant="common"),
    )
    done = sign_in(cfg, "work")
    assert done.returncode == 5, done.stderr
    wrong = f"{emulator.url}/{CONSUMERS_TENANT}/v2.0"
    assert f"the id_token was issued by '{wrong}'" in done.stderr
    assert stored(isolated) == []
    assert cli("--config", str(cfg), "token", "work").returncode == 6
    fine = sign_in(cfg, "anyone")
    assert fine.returncode == 0, fine.stderr


def test_a_forged_or_foreign_issuer_is_refused(
    entra: Start, tmp_path: Path, isolated: Path
) -> None:
    emulator = entra()
    cfg = config(
        tmp_path,
        entry("anyone", emulator, tenant="common"),
        entry("contoso", emulator, tenant=CONTOSO.id),
    )
    # Another host naming Ada's own tenant: the template is filled with tid, and differs.
    emulator.id_token_issuer = f"http://127.0.0.1:1/{CONTOSO.id}/v2.0"
    forged = sign_in(cfg, "anyone")
    assert forged.returncode == 5, forged.stderr
    assert "http://127.0.0.1:1/" in forged.stderr and "id_token was issued by" in forged.stderr
    # The right host, another tenant than the token's tid.
    emulator.id_token_issuer = f"{emulator.url}/{FABRIKAM.id}/v2.0"
    mixed = sign_in(cfg, "anyone")
    assert mixed.returncode == 5, mixed.stderr
    # A tenant's own provider takes no token of another tenant, even a consistent one.
    emulator.id_token_issuer, emulator.id_token_tenant = None, FABRIKAM.id
    foreign = sign_in(cfg, "contoso")
    assert foreign.returncode == 5, foreign.stderr
    assert stored(isolated) == []
    emulator.id_token_tenant = None
    own = sign_in(cfg, "contoso")
    assert own.returncode == 0, own.stderr


def test_graph_scopes_with_or_without_their_resource_count_as_granted(
    entra: Start, tmp_path: Path
) -> None:
    emulator = entra(withheld_scopes=frozenset({"Mail.Read"}))
    full = ["https://graph.microsoft.com/User.Read", "https://graph.microsoft.com/Mail.Read"]
    cfg = config(
        tmp_path,
        entry(
            "work",
            emulator,
            scope=full,
            required_scopes=["offline_access", "openid", full[0]],
        ),
    )
    done = sign_in(cfg, "work")
    assert done.returncode == 0, done.stderr
    # Entra answered "User.Read openid profile": only the unticked Mail.Read is missing.
    warning = "granted fewer scopes than asked for: without https://graph.microsoft.com/Mail.Read."
    assert warning in done.stderr


def test_a_web_app_sends_its_secret_in_the_form(entra: Start, tmp_path: Path) -> None:
    emulator = entra()
    cfg = config(
        tmp_path,
        entry("web", emulator, client_id="demo-confidential", client_secret="${WEB_SECRET}"),
    )
    done = sign_in(cfg, "web", env={"WEB_SECRET": "demo-secret"})
    assert done.returncode == 0, done.stderr  # the emulator's client takes client_secret_post
    assert "demo-secret" not in done.stderr


# -- device logins ------------------------------------------------------------------------------


def test_device_login_and_authorization_declined(
    entra: Start,
    tmp_path: Path,
    isolated: Path,
    device_login: Callable[..., DeviceLogin],
) -> None:
    emulator = entra()
    cfg = config(tmp_path, entry("work", emulator, tenant="organizations"))
    # --scope replaces the scopes for once: offline_access and openid still go along.
    run = device_login("--config", str(cfg), "login", "work", "--device", "--scope", "User.Read")
    uri, user_code = run.shown()
    assert uri == f"{emulator.url}/devicelogin"
    # The personal account cannot approve a code asked for through `organizations`.
    status, page = post(uri, {"user_code": user_code, "account": PAT.sub, "decision": "allow"})
    assert status == 400 and "Unknown account" in page
    status, page = post(uri, {"user_code": user_code, "account": GRACE.sub, "decision": "allow"})
    assert status == 200, page
    code, err = run.finish()
    assert code == 0, err
    assert f"Logged in to work as {GRACE.email} ({GRACE.sub})" in err
    assert "has the code in it" not in err  # Entra gives no verification_uri_complete
    [saved] = stored(isolated)
    assert saved["refresh_token"] and saved["extra"]["id_token_claims"]["tid"] == FABRIKAM.id

    declined = device_login("--config", str(cfg), "login", "work", "--device")
    uri, user_code = declined.shown()
    status, _ = post(uri, {"user_code": user_code, "decision": "deny"})
    assert status == 200
    code, err = declined.finish()
    assert code == 3, err
    assert "authorization_declined" in err
    assert [answer for _, answer in emulator.device_polls][-1] == "authorization_declined"
    assert discovery_paths(emulator) == []


# -- the issuer and scope rules, case by case -------------------------------------------------


def test_issuer_rules_by_tenant(tmp_path: Path) -> None:
    template = f"{GLOBAL}/{{tid}}/v2.0"

    def ok(tenant: str, tid: Any, iss: str | None = None) -> bool:
        provider = load(tmp_path, tenant=tenant)
        issued = iss if iss is not None else template.format(tid=tid)
        claims = {"tid": tid} if tid is not None else {"sub": "x"}
        return oauth.issued_by(provider, issued, claims)

    for tenant in ("common", "contoso.onmicrosoft.com"):
        assert ok(tenant, CONTOSO.id) and ok(tenant, CONSUMERS_TENANT)
        assert not ok(tenant, None, f"{GLOBAL}/{CONTOSO.id}/v2.0")  # no tid: nothing to put in
        assert not ok(tenant, "not-a-guid") and not ok(tenant, "../evil")
        assert not ok(tenant, CONTOSO.id, f"{GLOBAL}/{FABRIKAM.id}/v2.0")  # iss and tid differ
        assert not ok(tenant, CONTOSO.id, f"https://evil.example/{CONTOSO.id}/v2.0")
        assert not ok(tenant, CONTOSO.id, f"{GLOBAL}/{TENANT_TEMPLATE}/v2.0")
    assert ok("organizations", CONTOSO.id) and not ok("organizations", CONSUMERS_TENANT)
    assert ok("consumers", CONSUMERS_TENANT) and not ok("consumers", CONTOSO.id)
    assert ok(CONTOSO.id, CONTOSO.id) and not ok(CONTOSO.id, FABRIKAM.id)
    assert not ok(CONTOSO.id, None, f"{GLOBAL}/{CONTOSO.id}/v2.0")  # its tid is required
    # A redirect's iss (no claims, Entra sends none today): the template filled with a GUID,
    # under the same tenant rules; anything else is a mix-up.
    common, contoso = load(tmp_path, tenant="common"), load(tmp_path, tenant=CONTOSO.id)
    orgs = load(tmp_path, tenant="organizations")
    assert oauth.issued_by(common, f"{GLOBAL}/{CONTOSO.id}/v2.0", {})
    assert oauth.issued_by(common, f"{GLOBAL}/{CONSUMERS_TENANT}/v2.0", {})
    assert not oauth.issued_by(orgs, f"{GLOBAL}/{CONSUMERS_TENANT}/v2.0", {})
    for forged in (
        f"{GLOBAL}/not-a-guid/v2.0",
        f"{GLOBAL}/{CONTOSO.id}/x/v2.0",
        f"https://evil.example/{CONTOSO.id}/v2.0",
        f"{GLOBAL}/{{tenantid}}/v2.0/extra",
    ):
        assert not oauth.issued_by(common, forged, {}), forged
    assert oauth.issued_by(contoso, f"{GLOBAL}/{CONTOSO.id}/v2.0", {})
    assert not oauth.issued_by(contoso, f"{GLOBAL}/{FABRIKAM.id}/v2.0", {})


def test_scope_rules(tmp_path: Path) -> None:
    provider = load(tmp_path)
    held = MICROSOFT.scope_granted
    assert held is not None

    def token(scopes: list[str], *, refresh: bool = False, id_token: bool = False) -> Token:
        raw = {"id_token": "x.y.z"} if id_token else {}
        return Token("at", scopes=scopes, refresh_token="rt" if refresh else None, raw=raw)

    bare = token(["User.Read", "profile"])
    assert held(provider, "User.Read", bare) and held(provider, "user.read", bare)
    assert held(provider, "https://graph.microsoft.com/User.Read", bare)
    assert not held(provider, "Mail.Read", bare) and not held(provider, "offline_access", bare)
    assert held(provider, "offline_access", token([], refresh=True))
    assert held(provider, "openid", token([], id_token=True))
    assert not held(provider, "openid", bare)
    assert held(provider, "https://graph.microsoft.com/.default", bare)
    assert not held(provider, "api://my-api/.default", bare)
    assert held(provider, "api://my-api/.default", token(["api://my-api/Read"]))
    assert not held(provider, "https://graph.microsoft.com/.default", token(["openid"]))


# -- the emulator's own rules -------------------------------------------------------------------


def code_for(
    emulator: MicrosoftEmulator, tenant: str, scope: str, account: str | None = None
) -> tuple[str, str]:
    """Play the user through the sign-in page; return the code and the redirect URI."""
    redirect = "http://localhost:1"
    query = urllib.parse.urlencode(
        {
            "client_id": "loopauth-demo",
            "response_type": "code",
            "redirect_uri": redirect,
            "scope": scope,
            "state": "s",
        }
    )
    url = f"{emulator.url}/{tenant}/oauth2/v2.0/authorize?{query}"
    # The public client's PKCE is not the point here: the demo client requires it, so add it.
    verifier = "v" * 43
    challenge = oauth.s256_challenge(verifier)
    url += f"&code_challenge={challenge}&code_challenge_method=S256"
    result = browse(url, account=account, stop_at="http://localhost:1")
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(result.url).query))
    assert "code" in params, (result.url, result.body)
    assert "iss" not in params  # Entra sends no RFC 9207 iss
    return params["code"], verifier


def redeem(emulator: MicrosoftEmulator, tenant: str, code: str, verifier: str) -> dict[str, Any]:
    status, body = post(
        f"{emulator.url}/{tenant}/oauth2/v2.0/token",
        {
            "grant_type": "authorization_code",
            "client_id": "loopauth-demo",
            "code": code,
            "redirect_uri": "http://localhost:1",
            "code_verifier": verifier,
        },
    )
    assert status == 200, body
    assert isinstance(body, dict)
    return body


def test_emulator_answers_as_entra(entra: Start) -> None:
    emulator = entra()
    # No offline_access: no refresh token. Scope spelled as Entra spells it.
    code, verifier = code_for(emulator, "common", "openid user.read")
    body = redeem(emulator, "common", code, verifier)
    assert "refresh_token" not in body and body["scope"] == "openid User.Read"
    claims = claims_of(body["id_token"])
    assert claims["tid"] == CONTOSO.id and claims["iss"] == f"{emulator.url}/{CONTOSO.id}/v2.0"
    assert "preferred_username" not in claims and "email" not in claims  # no profile, no email
    # offline_access: a refresh token, but the answer's scope does not list it.
    code, verifier = code_for(emulator, "consumers", "openid profile email offline_access")
    body = redeem(emulator, "consumers", code, verifier)
    assert body["refresh_token"] and body["scope"] == "openid profile email"
    claims = claims_of(body["id_token"])
    assert claims["tid"] == CONSUMERS_TENANT and claims["preferred_username"] == PAT.email
    assert claims["oid"] == PAT.oid and claims["email"] == PAT.email and claims["ver"] == "2.0"
    # Each refresh brings a new refresh token; the used one stays valid (as Entra documents).
    token_url = f"{emulator.url}/consumers/oauth2/v2.0/token"
    form = {"grant_type": "refresh_token", "client_id": "loopauth-demo"}
    status, first = post(token_url, {**form, "refresh_token": body["refresh_token"]})
    assert status == 200 and first["refresh_token"] != body["refresh_token"]
    status, _ = post(token_url, {**form, "refresh_token": body["refresh_token"]})
    assert status == 200
    # Discovery: the issuer template for many tenants, the GUID for one (a domain is its GUID).
    for tenant, issuer in (
        ("common", f"{emulator.url}/{TENANT_TEMPLATE}/v2.0"),
        ("organizations", f"{emulator.url}/{TENANT_TEMPLATE}/v2.0"),
        ("consumers", f"{emulator.url}/{CONSUMERS_TENANT}/v2.0"),
        (CONTOSO.domain, f"{emulator.url}/{CONTOSO.id}/v2.0"),
    ):
        status, text = get(f"{emulator.url}/{tenant}/v2.0/.well-known/openid-configuration")
        doc = json.loads(text)
        assert status == 200 and doc["issuer"] == issuer
        assert doc["token_endpoint"] == f"{emulator.url}/{tenant}/oauth2/v2.0/token"
        assert "revocation_endpoint" not in doc
    # Unknown tenants, and no revocation endpoint anywhere.
    status, body = post(f"{emulator.url}/nowhere.example/oauth2/v2.0/token", form)
    assert status == 400 and body["error"] == "invalid_request"
    assert post(f"{emulator.url}/revoke", {"token": "x"})[0] == 404
    assert post(f"{emulator.url}/common/oauth2/v2.0/revoke", {"token": "x"})[0] == 404


def test_emulator_device_code_answer(entra: Start) -> None:
    emulator = entra()
    status, body = post(
        f"{emulator.url}/organizations/oauth2/v2.0/devicecode",
        {"client_id": "loopauth-demo", "scope": "openid profile offline_access user.read"},
    )
    assert status == 200, body
    assert "verification_uri_complete" not in body
    assert body["verification_uri"] == f"{emulator.url}/devicelogin"
    assert body["user_code"] in body["message"] and body["verification_uri"] in body["message"]
    assert body["expires_in"] == 900 and body["interval"] == 1
    token_url = f"{emulator.url}/organizations/oauth2/v2.0/token"
    grant = "urn:ietf:params:oauth:grant-type:device_code"
    form = {"grant_type": grant, "client_id": "loopauth-demo"}
    status, answer = post(token_url, {**form, "device_code": body["device_code"]})
    assert (status, answer["error"]) == (400, "authorization_pending")
    status, answer = post(token_url, {**form, "device_code": "unknown"})
    assert (status, answer["error"]) == (400, "bad_verification_code")
    time.sleep(1)
    post(body["verification_uri"], {"user_code": body["user_code"], "decision": "deny"})
    status, answer = post(token_url, {**form, "device_code": body["device_code"]})
    assert (status, answer["error"]) == (400, "authorization_declined")
