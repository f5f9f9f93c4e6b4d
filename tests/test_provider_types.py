"""Every hook and every ProviderType callable is exercised by a test named after it (datasette's
rule, checked below). A type's callables run for its own providers only, never for another's."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from test_plugins import make_distribution

import loopauth
from loopauth import hookspecs
from loopauth.config import parse
from loopauth.emulator import OAuthEmulator, browse
from loopauth.errors import ConfigError, ProviderError
from loopauth.flow import Flow, State
from loopauth.oauth import standard_token
from loopauth.plugin_manager import pm
from loopauth.provider import Account, Provider, ProviderType, Setting, TokenRequest
from loopauth.testing import cli, write_config
from loopauth.token import Token

ROOT = Path(__file__).resolve().parents[1]

CALLABLES = [
    f.name
    for f in dataclasses.fields(ProviderType)
    if f.name not in ("name", "description", "settings", "defaults")
]


def test_every_hook_and_provider_type_callable_has_a_test() -> None:
    hooks = [n for n, fn in vars(hookspecs).items() if hasattr(fn, "loopauth_spec")]
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    tests = set(re.findall(r"^def (test_\w+)\(", sources, re.M))
    assert len(hooks) >= 3 and len(CALLABLES) >= 7
    missing = [f"test_hook_{n}" for n in hooks if f"test_hook_{n}" not in tests]
    missing += [f"test_type_{n}" for n in CALLABLES if f"test_type_{n}" not in tests]
    assert not missing, missing


class _Registry:
    """Registers whatever provider types a test puts in `types`, through the real hook."""

    def __init__(self) -> None:
        self.types: dict[str, ProviderType] = {}

    @loopauth.hookimpl
    def register_provider_types(self, register: Callable[[ProviderType], None]) -> None:
        for ptype in self.types.values():
            register(ptype)


@pytest.fixture
def types() -> Iterator[dict[str, ProviderType]]:
    registry = _Registry()
    pm.register(registry, name="test-types")
    try:
        yield registry.types
    finally:
        pm.unregister(name="test-types")


def providers(emulator: OAuthEmulator, **callables: Any) -> tuple[dict[str, Provider], Any]:
    """A `mine` provider of a type with `callables`, and a plain oauth2 one beside it."""
    text = f"""
providers:
  mine:
    plugin: mine
    issuer: {emulator.url}
    client_id: loopauth-demo
    scope: openid email
  plain:
    issuer: {emulator.url}
    client_id: loopauth-demo
    scope: openid email
"""
    config = parse(text)
    return {name: config.select(name) for name in ("mine", "plain")}, config


def log_in(provider: Provider) -> Flow:
    flow = Flow(provider)
    url = flow.start()
    browse(url)
    flow.wait(10)
    return flow


def test_a_types_defaults_are_its_providers_defaults() -> None:
    from loopauth.plugins.tiktok_shop import TIKTOK_SHOP

    bare = Provider("t", TIKTOK_SHOP, {})  # built in code: no providers.yaml defaults applied
    assert (bare.refresh_leeway, bare.http_timeout, bare.timeout) == (86400.0, 30.0, 300.0)


def test_type_derive(types: dict[str, ProviderType], emulator: OAuthEmulator) -> None:
    def derive(settings: dict[str, Any]) -> None:
        settings["tenant"] = settings.get("tenant") or f"t-{settings['client_id']}"

    types["mine"] = ProviderType("mine", settings={"tenant": Setting()}, derive=derive)
    found, _ = providers(emulator)
    assert found["mine"].get("tenant") == "t-loopauth-demo"


def test_type_validate(types: dict[str, ProviderType], emulator: OAuthEmulator) -> None:
    types["mine"] = ProviderType("mine", validate=lambda s: "scope: must include profile")
    with pytest.raises(ConfigError, match=r":\d+: providers.mine.scope: must include profile"):
        providers(emulator)


def test_type_authorization_params(types: dict[str, ProviderType], emulator: OAuthEmulator) -> None:
    seen: list[dict[str, str]] = []

    def authorization_params(provider: Provider, params: dict[str, str]) -> dict[str, str]:
        seen.append(dict(params))
        return {**params, "acme_extra": "1"}

    types["mine"] = ProviderType("mine", authorization_params=authorization_params)
    found, _ = providers(emulator)
    flow = log_in(found["mine"])
    assert flow.state is State.SUCCEEDED and "acme_extra=1" in (flow.authorization_url or "")
    assert {"state", "code_challenge", "redirect_uri"} <= set(seen[0])
    other = log_in(found["plain"])  # the other type's provider never meets this callable
    assert "acme_extra" not in (other.authorization_url or "") and len(seen) == 1


def test_type_token_request(types: dict[str, ProviderType], emulator: OAuthEmulator) -> None:
    callbacks: list[Mapping[str, str]] = []

    def token_request(
        provider: Provider, request: TokenRequest, callback: Mapping[str, str]
    ) -> TokenRequest:
        callbacks.append(callback)
        return dataclasses.replace(request, grant_type="urn:acme:not-a-grant")

    types["mine"] = ProviderType("mine", token_request=token_request)
    found, _ = providers(emulator)
    flow = log_in(found["mine"])
    assert flow.state is State.FAILED and "unsupported_grant_type" in (flow.failure or "")
    assert {"code", "state"} <= set(callbacks[0])  # the redirect's parameters
    assert log_in(found["plain"]).state is State.SUCCEEDED and len(callbacks) == 1


def test_type_refresh_request(
    types: dict[str, ProviderType], emulator: OAuthEmulator, isolated: Path
) -> None:
    sent: list[TokenRequest] = []

    def refresh_request(provider: Provider, request: TokenRequest) -> TokenRequest:
        sent.append(request)
        return dataclasses.replace(request, grant_type="urn:acme:not-a-grant")

    types["mine"] = ProviderType("mine", refresh_request=refresh_request)
    found, _ = providers(emulator)
    log_in(found["mine"])
    with pytest.raises(ProviderError, match="unsupported_grant_type"):  # what it returned is sent
        loopauth.refresh(found["mine"])
    assert sent[0].grant_type == "refresh_token" and "refresh_token" in sent[0].params
    log_in(found["plain"])
    assert loopauth.refresh(found["plain"]).access_token and len(sent) == 1


def test_type_parse_token_response(types: dict[str, ProviderType], emulator: OAuthEmulator) -> None:
    def parse_token_response(
        provider: Provider, response: Mapping[str, Any], previous: Token | None
    ) -> Token:
        if "id_token" not in response:
            raise ProviderError(f"{provider.name}: no id_token")
        token = standard_token(provider, response, previous)
        token.extra["parsed_by"] = "mine"
        return token

    types["mine"] = ProviderType("mine", parse_token_response=parse_token_response)
    found, _ = providers(emulator)
    assert log_in(found["mine"]).result().extra["parsed_by"] == "mine"
    assert "parsed_by" not in log_in(found["plain"]).result().extra


def test_type_account_for(types: dict[str, ProviderType], emulator: OAuthEmulator) -> None:
    def account_for(provider: Provider, token: Token, callback: Mapping[str, str]) -> Account:
        return Account(f"acme/{token.extra['id_token_claims']['sub']}", "Acme account")

    types["mine"] = ProviderType("mine", account_for=account_for)
    found, _ = providers(emulator)
    token = log_in(found["mine"]).result()
    assert (token.account_id, token.account_label) == ("acme/user-1", "Acme account")
    assert log_in(found["plain"]).result().account_id == "user-1"


def _doc(emulator: OAuthEmulator, issuer: str) -> dict[str, Any]:
    """The emulator's endpoints, as a plugin would ship them, under `issuer`."""
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{emulator.url}/authorize",
        "token_endpoint": f"{emulator.url}/token",
        "revocation_endpoint": f"{emulator.url}/revoke",
    }


def test_type_metadata(types: dict[str, ProviderType], emulator: OAuthEmulator) -> None:
    shipped: dict[str, Any] = _doc(emulator, emulator.url)
    types["mine"] = ProviderType("mine", metadata=lambda provider: shipped)
    found, _ = providers(emulator)
    assert log_in(found["mine"]).state is State.SUCCEEDED
    assert not [path for _, path in emulator.log if "well-known" in path]  # no discovery
    assert log_in(found["plain"]).state is State.SUCCEEDED
    assert [path for _, path in emulator.log if "well-known" in path]  # plain discovers
    shipped["issuer"] = "https://elsewhere.example"  # a copy for another issuer is refused
    found, _ = providers(emulator)
    with pytest.raises(ProviderError, match="the plugin's own copy names issuer"):
        Flow(found["mine"]).start()


def test_type_issuer_matches(types: dict[str, ProviderType], emulator: OAuthEmulator) -> None:
    # The configured issuer is not what the emulator writes in `iss` (redirect and id_token):
    # only the type's own rule can accept it, as Google's bare `accounts.google.com` is.
    seen: list[tuple[str, bool]] = []

    def issuer_matches(provider: Provider, iss: str, claims: Mapping[str, Any]) -> bool:
        seen.append((iss, bool(claims)))
        return iss == emulator.url

    types["mine"] = ProviderType(
        "mine",
        metadata=lambda provider: _doc(emulator, "https://issuer.example"),
        issuer_matches=issuer_matches,
    )
    text = f"""
providers:
  mine:
    plugin: mine
    issuer: https://issuer.example
    client_id: loopauth-demo
    scope: openid email
  plain:
    issuer: https://issuer.example
    client_id: loopauth-demo
    authorization_endpoint: {emulator.url}/authorize
    token_endpoint: {emulator.url}/token
    scope: openid email
"""
    config = parse(text)
    flow = log_in(config.select("mine"))
    assert flow.state is State.SUCCEEDED, flow.failure
    assert (emulator.url, False) in seen and (emulator.url, True) in seen  # redirect, id_token
    plain = config.select("plain")
    plain.metadata = {"issuer": "https://issuer.example"}  # as if discovered: no network here
    refused = log_in(plain)
    assert refused.state is State.FAILED and "possible mix-up attack" in (refused.failure or "")


def test_type_scope_granted(
    types: dict[str, ProviderType], emulator: OAuthEmulator, isolated: Path
) -> None:
    emulator.withheld_scopes = frozenset({"email"})  # asked for, never granted
    asked: list[str] = []

    def scope_granted(provider: Provider, scope: str, token: Token) -> bool:
        asked.append(scope)  # this provider grants `email` under another name, say
        return scope in token.scopes or (scope == "email" and "openid" in token.scopes)

    types["mine"] = ProviderType("mine", scope_granted=scope_granted)
    found, _ = providers(emulator)
    for provider in found.values():
        provider.settings["required_scopes"] = ["email"]
    assert log_in(found["mine"]).state is State.SUCCEEDED and "email" in asked
    refused = log_in(found["plain"])
    assert refused.state is State.DENIED and "required scope(s) email" in (refused.failure or "")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in this process (where the test's provider types are registered)."""
    from loopauth.cli import run

    code = run(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _write(tmp_path: Path, emulator: OAuthEmulator) -> Path:
    return write_config(
        tmp_path / "types.yaml",
        f"""
        providers:
          mine:
            plugin: mine
            issuer: {emulator.url}
            client_id: loopauth-demo
          plain:
            issuer: {emulator.url}
            client_id: loopauth-demo
        """,
    )


def test_type_lacks(
    types: dict[str, ProviderType],
    emulator: OAuthEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def lacks(provider: Provider) -> list[str]:
        return [] if provider.client_secret else ["client_secret (for the browser login)"]

    types["mine"] = ProviderType("mine", lacks=lacks)
    cfg = _write(tmp_path, emulator)
    code, out, _ = _run(capsys, "--config", str(cfg), "providers")
    assert code == 0
    assert "  mine: plugin mine\n    lacks: client_secret (for the browser login)\n" in out
    assert "  plain: plugin oauth2\n" in out and out.count("lacks:") == 1
    types["mine"] = ProviderType("mine", lacks=lambda provider: 1 / 0)  # type: ignore[arg-type,return-value]
    # -v: past the settings cache, which a real plugin's changed file would invalidate.
    code, out, err = _run(capsys, "--config", str(cfg), "-v", "providers")
    assert code == 0 and "lacks:" not in out and "Traceback" not in err  # a plugin bug: nothing


def test_type_logout_note(
    types: dict[str, ProviderType],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with OAuthEmulator(revocation=False) as emulator:
        note = "Acme keeps tokens until they expire; sign out at acme.example"
        types["mine"] = ProviderType("mine", logout_note=note)
        found, _ = providers(emulator)
        for name in ("mine", "plain"):
            log_in(found[name])
        cfg = _write(tmp_path, emulator)
        code, _, err = _run(capsys, "--config", str(cfg), "logout", "mine")
        assert code == 0 and f"removed the token locally only ({note})" in err
        code, _, err = _run(capsys, "--config", str(cfg), "logout", "plain")
        assert code == 0 and "(plain offers no revocation endpoint)" in err


def test_type_init_settings(
    types: dict[str, ProviderType], capsys: pytest.CaptureFixture[str]
) -> None:
    types["mine"] = ProviderType(
        "mine",
        settings={"tenant": Setting(default="common", help="who may log in")},
        init_settings=("tenant", "client_id", "client_secret"),
    )
    code, out, _ = _run(capsys, "init", "mine", "--print")
    assert code == 0
    assert out.splitlines()[1:] == [
        "  mine:",
        "    plugin: mine",
        "    # who may log in",
        "    tenant: common",
        "    # client identifier registered with the provider",
        "    client_id: ${MINE_CLIENT_ID}",
        # The type does without a secret: unset, the variable leaves it out.
        "    # client secret; absent for a public client; from the environment (may stay unset)",
        "    client_secret: ${MINE_CLIENT_SECRET:-}",
    ]
    types["mine"] = dataclasses.replace(
        types["mine"],
        validate=lambda s: None if s.get("client_secret") else "client_secret: is required",
    )
    code, out, _ = _run(capsys, "init", "mine", "--print")
    assert code == 0 and "    client_secret: ${MINE_CLIENT_SECRET}\n" in out


def test_type_init_help(types: dict[str, ProviderType], capsys: pytest.CaptureFixture[str]) -> None:
    types["mine"] = ProviderType(
        "mine", description="Acme", init_help="Register at acme.example\nwith this callback."
    )
    code, out, _ = _run(capsys, "init", "mine", "--print", "--name", "acme")
    assert code == 0
    assert out.startswith("  # Register at acme.example\n  # with this callback.\n  acme:\n")
    types["mine"] = ProviderType("mine", description="Acme, in one line")
    assert _run(capsys, "init", "mine", "--print")[1].startswith("  # Acme, in one line\n")


def test_hook_register_provider_types(types: dict[str, ProviderType]) -> None:
    types["mine"] = ProviderType("mine", description="mine, registered by a test plugin")
    assert parse("providers:\n  a:\n    plugin: mine\n").select("a").type is types["mine"]
    types["clash"] = ProviderType("oauth2")
    with pytest.raises(ConfigError, match="both register the provider type 'oauth2'"):
        parse("providers:\n  a:\n    client_id: x\n")


COMMANDS = """
import loopauth
from loopauth.command import Command
from loopauth.emulator import OAuthEmulator


def hello(args):
    print(f"hello from {args.provider or 'nobody'}")
    return 0


@loopauth.hookimpl
def register_commands(register):
    register(Command("hello", "say hello", hello))


@loopauth.hookimpl
def register_emulators(register):
    register("acme", OAuthEmulator)
"""


def test_hook_register_commands(tmp_path: Path) -> None:
    site = make_distribution(tmp_path / "site", module="hello_plugin", source=COMMANDS)
    cfg = write_config(tmp_path / "p.yaml", "providers:\n  a:\n    client_id: x\n")
    out = cli("--config", str(cfg), "hello", "a", env={"PYTHONPATH": str(site)})
    assert out.returncode == 0 and out.stdout == "hello from a\n", out.stderr
    twice = make_distribution(
        tmp_path / "site", module="hello_again", source=COMMANDS, name="again", entry="again"
    )
    out = cli("--config", str(cfg), "hello", env={"PYTHONPATH": str(twice)})
    assert out.returncode == 2 and "both register the command 'hello'" in out.stderr


def test_hook_register_emulators(tmp_path: Path) -> None:
    from loopauth import plugin_manager
    from loopauth.emulator import OAuthEmulator as Factory

    assert {"oauth2", "tiktok_shop"} <= set(plugin_manager.emulators())

    class Clash:
        @loopauth.hookimpl
        def register_emulators(self, register: Callable[..., None]) -> None:
            register("oauth2", Factory)

    pm.register(Clash(), name="clash")
    try:
        with pytest.raises(ConfigError, match="both register the emulator 'oauth2'"):
            plugin_manager.emulators()
    finally:
        pm.unregister(name="clash")
    import socket

    site = make_distribution(tmp_path / "site", module="hello_plugin", source=COMMANDS)
    with socket.socket() as busy:  # found and started: its port is taken, a clear exit 2
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        out = cli("emulator", "acme", "--port", port, env={"PYTHONPATH": str(site)}, timeout=20)
    assert out.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in out.stderr, out.stderr
    missing = cli("emulator", "nope", timeout=20)
    assert missing.returncode == 2 and "acme" not in missing.stderr


STORES = '''
import os

import loopauth
from loopauth.provider import Setting
from loopauth.store import TokenStore
from loopauth.stores import StoreType


class FolderStore(TokenStore):
    """Token files in a folder of the user's choosing."""

    kind = "folder"

    def __init__(self, path):
        super().__init__()
        self.root = os.path.join(path, "tokens")


def check(url, options):
    return None if os.path.isabs(options.get("path", "")) else "store_options.path: must be absolute"


@loopauth.hookimpl
def register_stores(register):
    register(StoreType("folder", lambda url, options: FolderStore(options["path"]),
                       settings={"path": Setting(help="where")}, validate=check))
'''


def test_hook_register_stores(tmp_path: Path, oauth_emulator: OAuthEmulator) -> None:
    from loopauth.testing import login

    site = make_distribution(tmp_path / "site", module="folder_store", source=STORES)
    env = {"PYTHONPATH": str(site)}
    vault = tmp_path / "vault"
    cfg = write_config(
        tmp_path / "p.yaml",
        f"""
        providers:
          emu:
            issuer: {oauth_emulator.url}
            client_id: loopauth-demo
            store: folder
            store_options:
              path: {vault}
    """,
    )
    assert login("--config", str(cfg), "login", env=env).returncode == 0
    [saved] = (vault / "tokens" / "emu").glob("*.json")  # the plugin's store holds it
    token = cli("--config", str(cfg), "token", env=env)
    assert token.returncode == 0 and token.stdout.strip() in saved.read_text()
    status = cli("--config", str(cfg), "status", env=env)
    assert status.returncode == 0 and status.stdout.splitlines()[1].split()[-1] == "folder"
    cfg.write_text(cfg.read_text().replace(f"path: {vault}", "path: relative"))
    out = cli("--config", str(cfg), "token", env=env)
    assert out.returncode == 2 and "store_options.path: must be absolute" in out.stderr
    cfg.write_text(cfg.read_text().replace("path: relative", "pth: x"))
    out = cli("--config", str(cfg), "token", env=env)
    assert out.returncode == 2, out.stderr
    assert "unknown option for the folder store (did you mean 'path'?)" in out.stderr
    clash = make_distribution(
        tmp_path / "site2",
        module="file_again",
        source=STORES.replace('"folder", lambda', '"file", lambda'),
        name="again",
        entry="again",
    )
    out = cli("--config", str(cfg), "status", env={"PYTHONPATH": str(clash)})
    assert out.returncode == 2 and "both register the store type 'file'" in out.stderr
