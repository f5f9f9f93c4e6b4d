"""Plugins: an outside distribution adds a provider through the entry-point group, no change here."""

from __future__ import annotations

import inspect
import json
import os
import textwrap
from pathlib import Path

import pytest

from loopauth import hookspecs
from loopauth.emulator import OAuthEmulator
from loopauth.testing import cli, login, write_config

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
"""An outside plugin: the Acme identity service, a standard provider with a tenant parameter."""
import loopauth
from loopauth.provider import Account, ProviderType, Setting


def authorization_params(provider, params):
    return {**params, "acme_tenant": provider.get("tenant")}


def account_for(provider, token, callback):
    sub = token.extra["id_token_claims"]["sub"]
    return Account(f"{provider.get('tenant')}/{sub}", f"Acme {provider.get('tenant')}")


ACME = ProviderType(
    name="acme",
    description="Acme ID",
    settings={"tenant": Setting(help="Acme tenant")},
    defaults={"scope": ["openid", "email"]},
    authorization_params=authorization_params,
    account_for=account_for,
)


@loopauth.hookimpl
def register_provider_types(register):
    register(ACME)
'''


def make_distribution(
    where: Path,
    module: str = "acme_loopauth",
    source: str = PLUGIN,
    name: str = "acme-loopauth",
    entry: str = "acme",
) -> Path:
    """Lay out an installed distribution by hand: a module plus its dist-info with an entry point."""
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{module}.py").write_text(textwrap.dedent(source))
    info = where / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[loopauth]\n{entry} = {module}\n")
    return where


@pytest.fixture
def outside(tmp_path: Path) -> dict[str, str]:
    site = make_distribution(tmp_path / "site")
    return {"PYTHONPATH": str(site)}


def test_outside_plugin_provider_is_selectable_and_logs_in(
    tmp_path: Path, outside: dict[str, str], emulator: OAuthEmulator, isolated: Path
) -> None:
    cfg = write_config(
        tmp_path / "providers.yaml",
        f"""
        providers:
          acme:
            plugin: acme
            tenant: t1
            issuer: {emulator.url}
            client_id: loopauth-demo
    """,
    )
    listing = json.loads(cli("--config", str(cfg), "providers", "--json", env=outside).stdout)
    assert "acme" in listing["provider_types"]
    [plugin] = [p for p in listing["plugins"] if p["name"] == "acme"]
    assert plugin == {
        "name": "acme",
        "distribution": "acme-loopauth",
        "version": "1.0",
        "builtin": False,
    }
    assert listing["providers"] == [
        {
            "name": "acme",
            "plugin": "acme",
            "default": False,
            "error": None,
            "missing": None,
            "lacks": [],
        }
    ]
    result = login("--config", str(cfg), "login", env=outside)
    assert result.returncode == 0, result.stderr
    assert result.url is not None and "acme_tenant=t1" in result.url
    assert "scope=openid+email" in result.url
    assert "Logged in to acme as Acme t1 (t1/user-1)" in result.stderr
    assert result.page is not None and "Acme t1" in result.page.body
    out = cli("--config", str(cfg), "status", "--json", env=outside)
    assert json.loads(out.stdout)[0]["account_id"] == "t1/user-1"


def test_load_plugins_variable_restricts_third_party_plugins(
    tmp_path: Path, outside: dict[str, str]
) -> None:
    cfg = write_config(
        tmp_path / "providers.yaml",
        """
        providers:
          acme:
            plugin: acme
            issuer: https://acme.example
            client_id: x
    """,
    )
    env = {**outside, "LOOPAUTH_LOAD_PLUGINS": "something-else"}
    out = cli("--config", str(cfg), "token", env=env)
    assert out.returncode == 2
    assert (
        "unknown plugin 'acme'" in out.stderr
        and "installed: github, google, microsoft, oauth2, tiktok_shop\n" in out.stderr
    )
    env["LOOPAUTH_LOAD_PLUGINS"] = "acme"
    listing = json.loads(cli("--config", str(cfg), "providers", "--json", env=env).stdout)
    assert "acme" in listing["provider_types"]


def test_broken_plugin_is_reported_and_others_still_work(tmp_path: Path) -> None:
    site = make_distribution(
        tmp_path / "site",
        module="broken_plugin",
        source="raise RuntimeError('boom')\n",
        name="broken",
        entry="broken",
    )
    cfg = write_config(
        tmp_path / "providers.yaml",
        """
        providers:
          emu:
            issuer: https://a.example
            client_id: x
    """,
    )
    out = cli("--config", str(cfg), "providers", env={"PYTHONPATH": str(site)})
    assert out.returncode == 0, out.stderr
    assert "plugin broken failed to load: RuntimeError: boom" in out.stdout
    assert "Traceback" not in out.stderr


def test_duplicate_provider_type_is_an_error(tmp_path: Path) -> None:
    clash = PLUGIN.replace('name="acme"', 'name="oauth2"')
    site = make_distribution(tmp_path / "site", source=clash)
    cfg = write_config(tmp_path / "providers.yaml", "providers:\n  a:\n    client_id: x\n")
    out = cli("--config", str(cfg), "providers", env={"PYTHONPATH": str(site)})
    assert out.returncode == 2
    assert (
        "plugins acme and oauth2 both register the provider type 'oauth2'" in out.stderr
        or "plugins oauth2 and acme both register the provider type 'oauth2'" in out.stderr
    )


def _signature(fn: object) -> str:
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{fn.__name__}({params}) -> {sig.return_annotation}"  # type: ignore[attr-defined]


def test_every_hook_is_documented_with_its_exact_signature() -> None:
    docs = (ROOT / "docs" / "plugins.md").read_text()
    hooks = [
        fn for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, "loopauth_spec")
    ]
    assert len(hooks) >= 3  # registration hooks; behaviour is on ProviderType (below)
    for fn in hooks:
        assert f"### `{fn.__name__}`" in docs, f"{fn.__name__} has no heading in docs/plugins.md"
        assert f"def {_signature(fn)}" in docs, f"docs/plugins.md: {fn.__name__} signature"


def test_every_provider_type_callable_is_documented_with_its_exact_signature() -> None:
    import typing

    from loopauth import provider

    docs = (ROOT / "docs" / "plugins.md").read_text()
    hints = typing.get_type_hints(provider.ProviderType, vars(provider) | {"Token": object})
    callables = [n for n, h in hints.items() if "Callable" in str(h)]
    assert len(callables) >= 7
    for name in callables:
        assert f"### `ProviderType.{name}`" in docs, name
        assert f"```python\n{name}(" in docs, f"docs/plugins.md: {name} signature"


def test_docs_example_plugin_is_the_tested_one() -> None:
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert PLUGIN.strip().split('"""', 2)[2].strip() in docs


def test_docs_plugin_test_runs_with_the_pytest_plugin(
    tmp_path: Path, outside: dict[str, str]
) -> None:
    """A third-party suite with no conftest gets loopauth.testing's fixtures by entry point."""
    import subprocess
    import sys

    docs = (ROOT / "docs" / "plugins.md").read_text()
    section = docs[docs.index("## Testing a plugin") :]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    suite = tmp_path / "acme-tests"
    suite.mkdir()
    (suite / "test_acme.py").write_text(example)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)],
        cwd=suite,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **outside},
    )
    assert "1 passed" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_every_base_setting_is_documented() -> None:
    from loopauth.provider import BASE_SETTINGS

    docs = (ROOT / "docs" / "configuration.md").read_text()
    for key in BASE_SETTINGS:
        assert f"| `{key}` |" in docs, f"docs/configuration.md lacks {key}"
