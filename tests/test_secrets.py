"""Secrets never reach stdout, stderr or logs, even with -v and hook tracing on."""

from __future__ import annotations

import json
import re
from pathlib import Path

from loopauth.emulator import EmulatorClient, OAuthEmulator
from loopauth.store import TokenStore

from conftest import cli, login, write_config

SECRET = "cs-Distinctive-Client-Secret-0042"


def test_no_secret_in_any_output_with_debug_logging(tmp_path: Path) -> None:
    clients = {
        "conf": EmulatorClient("conf", SECRET, ["http://127.0.0.1/callback"], "client_secret_basic")
    }
    with OAuthEmulator(clients=clients, rotate_refresh_tokens=True) as emu:
        cfg = write_config(
            tmp_path / "p.yaml",
            f"""
            providers:
              emu:
                issuer: {emu.url}
                client_id: conf
                client_secret: ${{EMU_SECRET}}
                scope: openid email
        """,
        )
        env = {"EMU_SECRET": SECRET, "LOOPAUTH_TRACE_HOOKS": "1"}
        outputs = []
        first = login("-v", "--config", str(cfg), "login", env=env)
        assert first.returncode == 0, first.stderr
        assert "hook " in first.stderr  # tracing was on
        outputs.append(first.stderr + first.stdout)
        assert first.page is not None
        callback = next(h for h in first.page.hops if "code=" in h)
        code = re.search(r"code=([^&]+)", callback).group(1)  # type: ignore[union-attr]
        state = re.search(r"state=([^&]+)", callback).group(1)  # type: ignore[union-attr]
        tokens = [TokenStore().find("emu")]
        for args in (
            ["refresh"],
            ["status"],
            ["status", "--json"],
            ["providers"],
            ["providers", "--json"],
            ["logout"],
            ["token"],
            ["refresh"],
        ):
            out = cli("-v", "--config", str(cfg), *args, env=env)
            outputs.append(out.stderr + out.stdout)
            if args == ["refresh"] and out.returncode == 0:
                tokens.append(TokenStore().find("emu"))
        bad = cli("-v", "--config", str(cfg), "login", "--no-browser", "--timeout", "0.5", env=env)
        outputs.append(bad.stderr + bad.stdout)
    # The state is in the authorization URL shown to the user by design; it is not a secret.
    assert state
    secrets = {SECRET, code}
    for t in tokens:
        secrets |= {t.access_token, t.refresh_token or SECRET, t.raw.get("id_token", SECRET)}
    text = "\n".join(outputs)
    leaked = [s for s in secrets if s in text]
    names = {SECRET: "secret", code: "code"}
    assert not leaked, [names.get(s, "token") for s in leaked]
    # PKCE verifiers are 86 URL-safe characters: no such run may appear anywhere.
    assert not re.search(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{86}(?![A-Za-z0-9_-])", text)
    assert json.dumps(tokens[0].raw)  # the store itself does keep them, of course
