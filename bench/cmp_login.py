"""2. A whole login: loopauth against google-auth-oauthlib, same emulator, same browser."""

from __future__ import annotations

import json
import secrets
import urllib.request

from harness import (
    BENCH,
    BenchError,
    Context,
    Row,
    ScriptedBrowser,
    Target,
    child_env,
    interleaved,
    ratio_row,
    split_rounds,
    write_config,
)

NAME = "login"
TITLE = "Whole login"
DESCRIPTION = """\
Process start to exit (token saved) of a whole authorization-code login against the same
emulator, with the same confidential client (secret from an environment variable, HTTP Basic,
PKCE) and scopes: `loopauth --config CFG login` (discovery from `issuer:`, launch page, token
file) against a small google-auth-oauthlib script (`InstalledAppFlow.run_local_server(port=0)`,
endpoints given, credentials JSON written). Both open "the browser" through `webbrowser`, with
`$BROWSER` set to the same two-line script that hands the URL to a scripted user
(`loopauth.emulator.browse`) already running in the bench process; both in the wheel venv, runs
alternating. Target: loopauth no slower (≤ 1.0x)."""

TARGET = Target("<=", 1.0)
CLIENT_ID = "bench-confidential"


def run(ctx: Context) -> list[Row]:
    """Alternate loopauth and google-auth-oauthlib logins; compare their medians."""
    from loopauth.emulator import EmulatorClient, OAuthEmulator
    from loopauth.emulator.registry import default_clients

    venv = ctx.venv()
    secret = secrets.token_urlsafe(24)
    clients = default_clients()
    clients[CLIENT_ID] = EmulatorClient(
        CLIENT_ID,
        secret,
        ["http://127.0.0.1/callback", "http://localhost/callback", "http://localhost/"],
        "client_secret_basic",
    )
    emu = ctx.stack.enter_context(OAuthEmulator(clients=clients))
    with urllib.request.urlopen(f"{emu.url}/.well-known/openid-configuration") as resp:
        discovery = json.load(resp)
    browser = ScriptedBrowser(ctx.scratch("browser"))
    ctx.stack.callback(browser.close)

    work = ctx.scratch("login")
    config = write_config(
        work,
        f"providers:\n  emu:\n    issuer: {emu.url}\n    client_id: {CLIENT_ID}\n"
        "    client_secret: ${BENCH_CLIENT_SECRET}\n    scope: openid email\n",
    )
    extra = {
        "BENCH_CLIENT_SECRET": secret,
        "BROWSER": str(browser.command),
        "OAUTHLIB_INSECURE_TRANSPORT": "1",  # google's side: the emulator is http on loopback
    }
    loopauth_env = child_env(work / "loopauth-home", **extra)
    google_env = child_env(work / "google-home", **extra)
    out = work / "google-token.json"
    commands = {
        "loopauth": ([venv.loopauth, "--config", str(config), "login"], loopauth_env),
        "google": (
            [
                venv.python,
                str(BENCH / "google_login.py"),
                CLIENT_ID,
                discovery["authorization_endpoint"],
                discovery["token_endpoint"],
                str(out),
            ],
            google_env,
        ),
    }
    pairs = max(4, ctx.runs * 2 // 5)
    rounds = split_rounds(pairs, 4)
    ctx.log(f"login: {pairs} logins each, alternating (plus one warm-up each)")
    codes_before = _code_grants(emu)
    times = interleaved(commands, work, rounds, warmups=1, log=ctx.log)
    expected = 2 * (pairs + 1)
    got = _code_grants(emu) - codes_before
    if browser.failures:
        raise BenchError(f"scripted browser: {browser.failures[0]}")
    if got != expected or browser.opened != expected:
        raise BenchError(
            f"{expected} logins ran but the emulator exchanged {got} codes and the browser "
            f"opened {browser.opened} pages"
        )
    if not out.is_file() or "token" not in json.loads(out.read_text()):
        raise BenchError("google-auth-oauthlib wrote no token")
    return [
        ratio_row(
            NAME,
            "whole login, loopauth vs google-auth-oauthlib",
            "google-auth-oauthlib `run_local_server`",
            "`loopauth login`",
            times["google"],
            times["loopauth"],
            target=TARGET,
            note=f"{pairs} logins each, alternating; all {expected} exchanged a code",
        )
    ]


def _code_grants(emu: object) -> int:
    calls = getattr(emu, "token_calls", [])
    return sum(1 for c in calls if c.get("grant_type") == "authorization_code")
