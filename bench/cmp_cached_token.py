"""1. A cached token, per store, against a bare `python -c pass` (wheel install)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from harness import (
    REDIS_PASSWORD,
    BenchError,
    Context,
    Row,
    Skip,
    Target,
    child_env,
    emu_config,
    interleaved,
    login_no_browser,
    ratio_row,
    redis_command,
    redis_server,
    run_cmd,
    secret_service,
    split_rounds,
    write_config,
)

NAME = "cached-token"
TITLE = "Cached token, per store"
DESCRIPTION = """\
`loopauth --config CFG token` printing a valid stored token (after one login against the
emulator), timed from process start to exit, against `python -c pass`; both with the
interpreter of a fresh venv that has the **wheel** installed (not the editable install).
Target: the file store within 2x. `python -m loopauth token` (file store) and the redis
(`store: redis://:PASSWORD@127.0.0.1:PORT/0`, a throwaway `redis-server`) and keyring
(`store: keyring`, gnome-keyring's Secret Service in a private `dbus-run-session`) stores are
measured without a target. Those two are reported as skipped when their program is missing,
and as an error when a login with them succeeds but `token` then fails."""

TARGET = Target("<=", 2.0)
# Where `store:` may go in providers.yaml: in the provider (as designed), else top level.
STORE_LAYOUTS = ("provider", "top-level")


def _config_for(issuer: str, store: str | None, layout: str) -> str:
    if store is None:
        return emu_config(issuer)
    if layout == "top-level":
        return emu_config(issuer, top=f"store: {store}\n")
    return emu_config(issuer, extra=f"    store: {store}\n")


def _file_tokens(home: Path) -> list[Path]:
    return [p for p in (home / "tokens").rglob("*.json") if not p.name.startswith(".")]


def _prepare_store(
    ctx: Context,
    issuer: str,
    store: str,
    extra_env: dict[str, str],
    holds: Callable[[], str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Log in with `store:`; return the token command and its env, or raise Skip / BenchError.

    A login refused with an error naming the store (an unknown setting or store type) is a
    Skip: that store is not available yet. `holds()` says what the store holds after the login
    ("" when nothing); a login that succeeds but leaves its token elsewhere, or a `token` that
    then fails, is an error.
    """
    venv = ctx.venv()
    kind = store.split(":")[0]
    problems: list[str] = []
    for layout in STORE_LAYOUTS:
        work = ctx.scratch(f"store-{layout}")
        config = write_config(work, _config_for(issuer, store, layout))
        env = child_env(work / "home", **extra_env)
        try:
            login_no_browser(venv.loopauth, config, env, work)
        except BenchError as exc:
            problems.append(f"{layout} `store:`: {exc}")
            continue
        if _file_tokens(work / "home"):
            problems.append(f"{layout} `store:` accepted but the token went to the file store")
            continue
        held = holds() if holds is not None else "the token"
        if not held:
            raise BenchError(f"login with `store: {store}` succeeded but {kind} holds nothing")
        cmd = [venv.loopauth, "--config", str(config), "token"]
        try:
            run_cmd(cmd, env, work)
        except BenchError as exc:
            raise BenchError(f"login stored {held} in {kind}, but then {exc}") from None
        return cmd, env
    text = "; ".join(problems)
    if re.search(r"\bstores?\b", text.lower()):
        raise Skip(f"{kind} store not available: {text}")
    raise BenchError(text)


def run(ctx: Context) -> list[Row]:
    """Log in once per store, then time `token` and `python -c pass` side by side."""
    from loopauth.emulator import OAuthEmulator

    venv = ctx.venv()
    rows: list[Row] = []
    emu = ctx.stack.enter_context(OAuthEmulator())
    work = ctx.scratch("file-store")
    config = write_config(work, _config_for(emu.url, None, ""))
    env = child_env(work / "home")
    login_no_browser(venv.loopauth, config, env, work)
    token_cmd = [venv.loopauth, "--config", str(config), "token"]
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "pass": ([venv.python, "-c", "pass"], env),
        "file": (token_cmd, env),
        "module": ([venv.python, "-m", "loopauth", *token_cmd[1:]], env),
    }
    skipped: dict[str, str] = {}

    # redis: a throwaway server for the whole comparison.
    try:
        port = ctx.stack.enter_context(redis_server(ctx.scratch("redis")))

        def redis_holds() -> str:
            reply = redis_command(port, "DBSIZE")  # ":N\r\n"
            count = int(reply[1:].strip() or 0) if reply.startswith(b":") else 0
            return f"{count} keys" if count else ""

        url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
        commands["redis"] = _prepare_store(ctx, emu.url, url, {}, redis_holds)
    except Skip as exc:
        skipped["redis"] = str(exc)
    except BenchError as exc:
        skipped["redis"] = f"error: {exc}"

    # keyring: a private D-Bus session with gnome-keyring's Secret Service.
    try:
        bus_env = ctx.stack.enter_context(secret_service(ctx.scratch("keyring"), venv.python))
        commands["keyring"] = _prepare_store(ctx, emu.url, "keyring", bus_env)
    except Skip as exc:
        skipped["keyring"] = str(exc)
    except BenchError as exc:
        skipped["keyring"] = f"error: {exc}"

    rounds = split_rounds(ctx.runs, 5)
    ctx.log(f"cached token: {sum(rounds)} runs of each of {', '.join(commands)}")
    times = interleaved(commands, work, rounds, log=ctx.log)
    base = times["pass"]
    labels = {
        "file": ("`loopauth token`, file store", TARGET),
        "module": ("`python -m loopauth token`, file store", None),
        "redis": ("`loopauth token`, redis store", None),
        "keyring": ("`loopauth token`, keyring store", None),
    }
    for key, (label, target) in labels.items():
        if key in times:
            rows.append(
                ratio_row(NAME, label, "`python -c pass`", label, base, times[key], target=target)
            )
        else:
            why = skipped.get(key, "not measured")
            row = Row(NAME, label, "`python -c pass`", label, skipped=why)
            if why.startswith("error: "):
                row = Row(NAME, label, "`python -c pass`", label, error=why[7:])
            rows.append(row)
    return rows
