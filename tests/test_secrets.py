"""Secrets never reach stdout, stderr or logs, even with -v and hook tracing on."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from loopauth.emulator import EmulatorClient, OAuthEmulator
from loopauth.store import TokenStore
from loopauth.testing import cli, login, write_config

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


APP_SECRET = "tts-Distinctive-App-Secret-9931"


def test_tiktok_commands_and_failure_paths_leak_nothing(tmp_path: Path) -> None:
    """Every command, success and failure, -v and hook tracing on: no secret in any output."""
    from loopauth.plugins.tiktok_shop.emulator import TikTokShopEmulator, tiktok_config
    from loopauth.testing import free_port

    port = free_port()
    emu = TikTokShopEmulator(
        app_key="key-1",
        app_secret=APP_SECRET,
        service_id="7301",
        redirect_url=f"http://localhost:{port}/",
        access_token_lifetime=30,
        rotate_refresh_tokens=True,
    )  # 30 s: the first `token` refreshes
    with emu:
        cfg = tiktok_config(
            tmp_path / "p.yaml",
            emu.url,
            port,
            name="shop",
            client_id="key-1",
            service_id="7301",
            secret_var="APP_SECRET",
            extra="    refresh_leeway: 60\n",
        )
        env = {"APP_SECRET": APP_SECRET, "LOOPAUTH_TRACE_HOOKS": "1"}
        texts: list[str] = []
        codes: list[str] = []

        def run(*args: str, allowed: str = "", **kw: str) -> None:
            out = cli("-v", "--config", str(cfg), *args, env={**env, **kw})
            assert not allowed or out.stdout == allowed + "\n"  # only the token it was asked for
            texts.append(
                out.stderr + out.stdout.replace(allowed, "") if allowed else out.stderr + out.stdout
            )

        for decision in ("allow", "deny"):
            result = login("-v", "--config", str(cfg), "login", decision=decision, env=env)
            texts.append(result.stderr + result.stdout)
            if result.page is not None:
                texts.append(result.page.body)
                codes += [
                    h.split("code=")[1].split("&")[0]
                    for h in result.page.hops
                    if "code=" in h and "code=null" not in h
                ]
        tokens = [TokenStore().find("shop")]
        emu.access_token_lifetime = 3600  # what `token` refreshes to now stays fresh
        soon = TokenStore().find("shop")  # 5 s left of 30: inside the leeway, so `token` refreshes
        soon.expires_at, soon.obtained_at = time.time() + 5, time.time() - 25
        TokenStore().save(soon)
        out = cli("-v", "--config", str(cfg), "token", env=env)
        tokens.append(TokenStore().find("shop"))
        assert out.stdout == tokens[-1].access_token + "\n" != tokens[0].access_token + "\n"
        texts.append(out.stderr)
        for args in (
            ["refresh"],
            ["shops"],
            ["shops", "--json"],
            ["status"],
            ["status", "--json"],
            ["providers"],
        ):
            run(*args)
            tokens.append(TokenStore().find("shop"))
        run("shops", APP_SECRET="wrong-secret-value")  # 106001
        emu.revoke_refresh_tokens()
        run("refresh")  # 36004005
        run("token", allowed=TokenStore().find("shop").access_token)  # still fresh: printed
        emu.expire_access_tokens()
        run("shops")
        run("login", "--no-browser", "--timeout", "0.5")  # times out
        run("logout")
        run("token")  # no stored token
    secrets = {APP_SECRET, *codes}
    for t in tokens:
        secrets |= {t.access_token, t.refresh_token or APP_SECRET}
    text = "\n".join(texts)
    assert codes and "TikTok Shop error 106001" in text and "36004005" in text
    leaked = [s for s in secrets if s in text]
    where = [t[max(0, t.find(s) - 300) : t.find(s) + 60] for s in leaked for t in texts if s in t]
    assert not leaked, where


def test_python_api_log_records_and_exceptions_leak_nothing(
    tmp_path: Path, caplog: object, monkeypatch: object
) -> None:
    """In-process: every log record (all loggers, DEBUG) and every exception text."""
    import logging
    import threading

    import pytest as _pytest

    import loopauth
    from loopauth import oauth
    from loopauth.emulator import browse

    verifiers: list[str] = []
    original = oauth.authorization_request

    def observing(provider: object, redirect_uri: str) -> object:
        request = original(provider, redirect_uri)  # type: ignore[arg-type]
        verifiers.append(request.verifier or "")
        return request

    monkeypatch.setattr(oauth, "authorization_request", observing)  # type: ignore[attr-defined]
    caplog.set_level(logging.DEBUG)  # type: ignore[attr-defined]
    clients = {
        "conf": EmulatorClient("conf", SECRET, ["http://127.0.0.1/callback"], "client_secret_post")
    }
    errors: list[BaseException] = []
    with OAuthEmulator(clients=clients, rotate_refresh_tokens=True) as emu:
        monkeypatch.setenv("EMU_SECRET", SECRET)  # type: ignore[attr-defined]
        cfg = write_config(
            tmp_path / "p.yaml",
            f"""
            providers:
              emu:
                issuer: {emu.url}
                client_id: conf
                client_secret: ${{EMU_SECRET}}
                token_endpoint_auth_method: client_secret_post
                scope: openid email
                pkce: true
        """,
        )
        provider = loopauth.load_config(str(cfg)).select("emu")
        flow = loopauth.Flow(provider)
        url = flow.start()
        hops: list[str] = []
        threading.Thread(target=lambda: hops.extend(browse(url).hops)).start()
        flow.wait(10)
        token = flow.result()
        refreshed = loopauth.refresh("emu", config=str(cfg))
        emu.revoke_refresh_tokens()
        with _pytest.raises(loopauth.NoTokenError) as info:  # invalid_grant: log in again
            loopauth.refresh("emu", config=str(cfg))
        errors.append(info.value)
        denied = loopauth.Flow(provider)
        threading.Thread(target=browse, args=(denied.start(),), kwargs={"decision": "deny"}).start()
        denied.wait(10)
        with _pytest.raises(loopauth.AccessDenied) as info2:
            denied.result()
        errors.append(info2.value)
    code = next(h for h in hops if "code=" in h).split("code=")[1].split("&")[0]
    secrets = {
        SECRET,
        code,
        *verifiers,
        token.access_token,
        token.refresh_token,
        refreshed.access_token,
        refreshed.refresh_token,
    }
    records = "\n".join(r.getMessage() for r in caplog.records)  # type: ignore[attr-defined]
    assert "POST /token" in records or "/token" in records  # urllib3 did log the calls
    exceptions = "\n".join(f"{e}\n{e!r}\n{getattr(e, 'response', '')}" for e in errors)
    reprs = "\n".join(repr(x) for x in (flow, provider, token, refreshed))
    for s in secrets:
        assert s and s not in records and s not in exceptions and s not in reprs
