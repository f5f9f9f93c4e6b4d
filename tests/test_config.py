"""providers.yaml: every kind of mistake is exit 2 with file, line and key; never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopauth.config import parse
from loopauth.errors import ConfigError
from loopauth.testing import cli, write_config

GOOD = """
default: emu
providers:
  emu:
    plugin: oauth2
    issuer: http://127.0.0.1:9/
    client_id: loopauth-demo
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "providers:\n  emu:\n    plugin: oauth3\n",
            ":3: providers.emu.plugin: unknown plugin 'oauth3' (did you mean 'oauth2'?)",
        ),
        (
            "providers:\n  emu:\n    client_id: x\n    issuer: https://a.example\n    scopes: a\n",
            ":5: providers.emu.scopes: unknown setting for plugin oauth2 (did you mean 'scope'?)",
        ),
        (
            "providers:\n  emu:\n    client_id: x\n    issuer: https://a.example\n    pkce: maybe\n",
            ":5: providers.emu.pkce: must be true or false",
        ),
        (
            "providers:\n  emu:\n    client_id: x\n    issuer: https://a.example\n    timeout: soon\n",
            ":5: providers.emu.timeout: must be a number",
        ),
        (
            "providers:\n  emu:\n    client_id: x\n    issuer: https://a.example\n    scope: {a: 1}\n",
            ":5: providers.emu.scope: must be a string or a list of strings",
        ),
        (
            "providers:\n  emu:\n    client_id: x\n    issuer: not a url\n",
            ":4: providers.emu.issuer: 'not a url' must be an http(s) URL with a host",
        ),
        (
            "providers:\n  emu:\n    client_id: x\n    issuer: http://auth.example.com\n",
            ":4: providers.emu.issuer: 'http://auth.example.com' must use https (http:// is only "
            "allowed for loopback hosts)",
        ),
        (
            "providers:\n  emu:\n    client_id: x\n    issuer: https://a.example\n"
            "    redirect_uri: http://0.0.0.0:8080/cb\n",
            ":5: providers.emu.redirect_uri: 'http://0.0.0.0:8080/cb' must be a loopback http URL",
        ),
        (
            "providers:\n  emu:\n    issuer: https://a.example\n",
            ":2: providers.emu.client_id: is required",
        ),
        (
            "providers:\n  emu:\n    client_id: x\n",
            "providers.emu.token_endpoint: is required unless `issuer` is set",
        ),
        (
            "providers:\n  emu:\n    client_id: x\n    issuer: https://a.example\n"
            "    token_endpoint_auth_method: client_secret_jwt\n",
            "token_endpoint_auth_method: must be one of: client_secret_basic, client_secret_post, none",
        ),
        (
            "providers:\n  'bad name':\n    client_id: x\n",
            ":2: providers.bad name: provider names use letters",
        ),
        (
            "providers:\n  emu:\n    client_id: x\n    issuer: https://a.example\n"
            "    client_secret: [s3cr3t-value]\n",
            ":5: providers.emu.client_secret: has the wrong type (must be a string)",
        ),
    ],
)
def test_provider_errors_name_line_and_key(text: str, expected: str) -> None:
    config = parse(text, "p.yaml")
    [error] = config.errors.values()
    assert expected in str(error)
    assert "s3cr3t" not in str(error)
    with pytest.raises(ConfigError):
        config.select("emu" if "emu" in config.errors else None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("providers: [a, b\n", "p.yaml:2: invalid YAML"),
        ("", "p.yaml: is empty"),
        (
            "providers:\n  emu:\n    client_id: x\n    client_id: y\n",
            "p.yaml:4: providers.emu.client_id: duplicate key",
        ),
        (
            "defaults: emu\nproviders: {}\n",
            "p.yaml:1: defaults: unknown top-level key (did you mean 'default'?)",
        ),
        ("default: emu\n", "p.yaml: has no `providers:` mapping"),
        ("providers:\n", "p.yaml:1: providers: no providers are configured"),
        ("- a\n- b\n", "p.yaml:1: must be a mapping"),
        (
            GOOD.replace("default: emu", "default: emux"),
            "p.yaml:2: default: names no configured provider (did you mean 'emu'?)",
        ),
        ("a: &a [*a, *a]\n", "p.yaml"),
        ("x: " + "[" * 5000 + "]" * 5000 + "\n", "p.yaml: is nested too deeply"),
        (
            "lol: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
            "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
            "providers: {}\n",
            "too large or too deeply aliased",
        ),
    ],
)
def test_file_errors(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text, "p.yaml")
    assert expected in str(info.value)


def test_env_substitution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMU_ID", "from-env")
    monkeypatch.setenv("EMPTY", "")
    monkeypatch.delenv("UNSET", raising=False)
    config = parse("""
providers:
  emu:
    issuer: ${ISSUER:-https://auth.example}
    client_id: ${EMU_ID}
    auth_params: {prompt: "${EMPTY:-consent}", literal: "$${NOT_A_VAR}"}
""")
    emu = config.select(None)
    assert emu.get("client_id") == "from-env"
    assert emu.get("issuer") == "https://auth.example"
    assert emu.get("auth_params") == {"prompt": "consent", "literal": "${NOT_A_VAR}"}


def test_missing_env_var_names_variable_and_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOP_SECRET", raising=False)
    config = parse(GOOD + "    client_secret: ${SHOP_SECRET}\n", "p.yaml")
    with pytest.raises(ConfigError) as info:
        config.select("emu")
    assert str(info.value) == (
        "p.yaml:8: providers.emu.client_secret: environment variable "
        "SHOP_SECRET is not set (needed by provider emu)"
    )


def test_a_broken_provider_does_not_block_the_others() -> None:
    config = parse(GOOD + "  other:\n    plugin: nope\n", "p.yaml")
    assert config.select("emu").name == "emu"
    with pytest.raises(ConfigError, match="unknown plugin 'nope'"):
        config.select("other")


def test_select_rules() -> None:
    two = parse(
        GOOD.replace("default: emu\n", "") + "  b:\n    client_id: x\n"
        "    issuer: https://b.example\n",
        "p.yaml",
    )
    with pytest.raises(ConfigError, match="several providers are configured"):
        two.select(None)
    with pytest.raises(ConfigError, match="no provider named 'em'"):
        two.select("em")
    assert parse(GOOD).select(None).name == "emu"


def test_cli_reports_config_errors_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOPE_ID", raising=False)
    cfg = write_config(
        tmp_path / "providers.yaml",
        """
        providers:
          emu:
            issuer: https://a.example
            client_id: ${NOPE_ID}
    """,
    )
    for args in (["login", "--no-browser"], ["token"], ["refresh"]):
        out = cli("--config", str(cfg), *args)
        assert out.returncode == 2, (args, out.stderr)
        assert "environment variable NOPE_ID is not set (needed by provider emu)" in (
            out.stderr + out.stdout
        )
        assert "Traceback" not in out.stderr
    for args in (["status"], ["providers"]):  # they never send it: not broken, say what to set
        out = cli("--config", str(cfg), *args)
        assert out.returncode == 0, (args, out.stderr)
        assert "set NOPE_ID" in out.stdout and "Traceback" not in out.stderr
    broken = write_config(tmp_path / "broken.yaml", "providers: [\n")
    out = cli("--config", str(broken), "token")
    assert out.returncode == 2 and f"{broken}:2: invalid YAML" in out.stderr
    missing = cli("--config", str(tmp_path / "nope.yaml"), "token")
    assert missing.returncode == 2 and "nope.yaml does not exist" in missing.stderr


def test_config_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user_dir = tmp_path / "xdg-config" / "loopauth"
    user_dir.mkdir(parents=True)
    write_config(user_dir / "providers.yaml", GOOD.replace("emu", "fromuser"))
    out = cli("providers", "--json")
    assert '"fromuser"' in out.stdout, out.stderr
    write_config(tmp_path / "providers.yaml", GOOD.replace("emu", "fromcwd"))
    refused = cli("providers", "--json")  # the current folder's file needs approval first
    assert refused.returncode == 2 and "loopauth trust" in refused.stderr
    assert cli("trust").returncode == 0
    assert '"fromcwd"' in cli("providers", "--json").stdout
    env_cfg = write_config(tmp_path / "env.yaml", GOOD.replace("emu", "fromenv"))
    assert '"fromenv"' in cli("providers", "--json", env={"LOOPAUTH_CONFIG": str(env_cfg)}).stdout
    arg_cfg = write_config(tmp_path / "arg.yaml", GOOD.replace("emu", "fromarg"))
    out = cli(
        "--config", str(arg_cfg), "providers", "--json", env={"LOOPAUTH_CONFIG": str(env_cfg)}
    )
    assert '"fromarg"' in out.stdout


def test_no_config_anywhere(tmp_path: Path) -> None:
    out = cli("token")
    assert out.returncode == 2 and "no providers.yaml found" in out.stderr


UNSET_TIKTOK: dict[str, str] = {}  # the suite runs without them (asserted below)


def test_repo_example_is_valid() -> None:
    assert not {"TIKTOK_APP_KEY", "TIKTOK_APP_SECRET", "TIKTOK_SERVICE_ID"} & set(os.environ)
    from pathlib import Path

    ROOT = Path(__file__).resolve().parents[1]

    env = {"TIKTOK_APP_KEY": "k", "TIKTOK_APP_SECRET": "s", "TIKTOK_SERVICE_ID": "7301"}
    out = cli("--config", str(ROOT / "providers.yaml"), "providers", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "emulator (default): plugin oauth2" in out.stdout
    assert "tiktok-shop: plugin tiktok_shop" in out.stdout
    # Without the TikTok variables the example is not broken: it says what to set, exit 0.
    bare = cli("--config", str(ROOT / "providers.yaml"), "providers", env=UNSET_TIKTOK)
    assert bare.returncode == 0, bare.stdout + bare.stderr
    assert (
        "tiktok-shop: plugin tiktok_shop; not ready: set TIKTOK_APP_KEY, TIKTOK_APP_SECRET, "
        "TIKTOK_SERVICE_ID" in bare.stdout
    )
    status = cli("--config", str(ROOT / "providers.yaml"), "status", env=UNSET_TIKTOK)
    assert status.returncode == 0, status.stderr
    assert "tiktok-shop: not logged in; to log in or refresh, set TIKTOK_APP_KEY" in status.stdout
    login = cli("--config", str(ROOT / "providers.yaml"), "token", "tiktok-shop", env=UNSET_TIKTOK)
    assert login.returncode == 2
    assert "environment variables TIKTOK_APP_KEY (client_id), TIKTOK_APP_SECRET" in login.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "providers:\n  emu:\n    client_id: x\n    issuer: https://a.example\n    http_timeout: 0\n",
            ":5: providers.emu.http_timeout: must be a finite number > 0",
        ),
        (
            "providers:\n  emu:\n    client_id: x\n    issuer: https://a.example\n    timeout: .nan\n",
            ":5: providers.emu.timeout: must be a finite number > 0",
        ),
        (
            "providers:\n  emu:\n    client_id: x\n    authorization_endpoint: https://a.example/a\n"
            "    token_endpoint: https://a.example/t\n    supports_iss: true\n",
            "providers.emu.supports_iss: needs `issuer`",
        ),
        (
            "providers:\n  con:\n    client_id: x\n    issuer: https://a.example\n",
            ":2: providers.con: 'con' is a reserved file name on Windows",
        ),
    ],
)
def test_more_provider_errors(text: str, expected: str) -> None:
    [error] = parse(text, "p.yaml").errors.values()
    assert expected in str(error)


def test_names_differing_only_in_case() -> None:
    with pytest.raises(ConfigError, match="differs from provider 'emu' only in case"):
        parse(GOOD + "  EMU:\n    client_id: x\n    issuer: https://b.example\n", "p.yaml")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("    plugin: oauth3\n", "p.yaml:3: providers.emu.plugin: unknown plugin 'oauth3'"),
        (
            "    scopes: a\n",
            "p.yaml:3: providers.emu.scopes: unknown setting for plugin oauth2 "
            "(did you mean 'scope'?)",
        ),
        ("    pkce: sometimes\n", "p.yaml:3: providers.emu.pkce: must be true or false"),
        (
            "    token_endpoint: ftp://x/t\n",
            "p.yaml:3: providers.emu.token_endpoint: 'ftp://x/t' "
            "must be an http(s) URL with a host",
        ),
        (
            "    token_endpoint: http://auth.example.com/t\n",
            "p.yaml:3: providers.emu.token_endpoint: 'http://auth.example.com/t' must use https",
        ),
    ],
)
def test_each_error_kind_through_the_cli(tmp_path: Path, body: str, expected: str) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        "providers:\n  emu:\n" + body + "    client_id: x\n    issuer: https://a.example\n"
    )
    out = cli("--config", str(cfg), "token")
    assert out.returncode == 2
    assert out.stderr.startswith(f"loopauth: {cfg.parent / expected}") or expected in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "value",
    [
        "2024-02-30",
        "1" + "0" * 4300,
        "!!int 0x",
        "!!float abc",
        "9999-12-31 23:59:60",
        "!!timestamp x",
    ],
)
def test_values_yaml_itself_rejects(value: str, tmp_path: Path) -> None:
    text = f"providers:\n  emu:\n    issuer: https://a.example\n    client_id: {value}\n"
    with pytest.raises(ConfigError) as info:
        parse(text, "p.yaml")
    assert "p.yaml:4: providers.emu.client_id: bad value" in str(info.value)
    cfg = tmp_path / "p.yaml"
    cfg.write_text(text)
    out = cli("--config", str(cfg), "status")
    assert out.returncode == 2 and "bad value" in out.stderr and "internal error" not in out.stderr


def test_loading_from_python_writes_no_file(tmp_path: Path, isolated: Path) -> None:
    from loopauth import load_config

    cfg = write_config(tmp_path / "p.yaml", GOOD)
    assert load_config(str(cfg)).names() == ["emu"]
    assert not isolated.exists()  # no cache, no folder: reading a config is read-only
    assert cli("--config", str(cfg), "providers").returncode == 0
    assert (isolated / "cache").is_dir()  # the CLI keeps the cached-token path's cache


def test_token_params_cannot_set_what_loopauth_sends(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "p.yaml", GOOD + "    token_params:\n      grant_type: x\n")
    out = cli("--config", str(cfg), "token")
    assert out.returncode == 2, out.stderr
    assert "token_params: must not set 'grant_type'; loopauth sets it itself" in out.stderr


def test_a_mistyped_store_url_never_shows_its_password(tmp_path: Path, isolated: Path) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        "providers:\n  emu:\n    issuer: https://a.example\n    client_id: c\n"
        "    store: ${STORE_URL}\n"
    )
    env = {"STORE_URL": "redis:/:S3cretPassw0rd@cache.internal"}  # one slash short
    out = cli("--config", str(cfg), "providers", env=env)
    assert out.returncode == 2 and "unknown store (neither a store name nor a URL" in out.stdout
    assert "S3cretPassw0rd" not in out.stdout + out.stderr
    cached = "".join(p.read_text() for p in isolated.rglob("config-*.json"))
    assert cached  # the cache was written, and holds the error, but not the password
    assert "S3cretPassw0rd" not in cached
