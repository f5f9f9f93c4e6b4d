"""4. 64 concurrent `loopauth token` callers on an expired token against 64 on a fresh one."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from harness import (
    CMD_TIMEOUT,
    BenchError,
    Context,
    Row,
    Target,
    child_env,
    emu_config,
    login_no_browser,
    ratio_row,
    short,
    tail,
    write_config,
)

NAME = "concurrent"
TITLE = "64 concurrent callers"
DESCRIPTION = """\
64 `loopauth --config CFG token` processes started at once (all started, then all waited
for; wall time from the first start to the last exit), wheel venv. Fresh: the stored token is
valid. Expired: before the round the stored token is loaded (`TokenStore(home).find`), given
`expires_at = now - 10` and saved back, so all 64 find it expired at once. Refreshes are
counted as the access tokens the emulator issued during the round. Median of several rounds,
fresh and expired alternating. Target: ≤ 1.5x, exactly 1 refresh in every expired round (0 in
fresh ones), and all 64 callers printing the same token."""

TARGET = Target("<=", 1.5)
CALLERS = 64


def _issued(emu: Any) -> set[str]:
    value = emu.issued_access_tokens
    return set(value() if callable(value) else value)


def _expire(home: Path) -> None:
    from loopauth.store import TokenStore

    store = TokenStore(str(home))
    token = store.find("emu")
    token.expires_at = time.time() - 10
    store.save(token)


def _burst(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, set[str]]:
    """Start CALLERS copies at once; return the wall time and the distinct tokens printed."""
    procs: list[subprocess.Popen[bytes]] = []
    start = time.perf_counter()
    try:
        for _ in range(CALLERS):
            procs.append(
                subprocess.Popen(
                    cmd,
                    env=env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
        results = [p.communicate(timeout=CMD_TIMEOUT) for p in procs]
        elapsed = time.perf_counter() - start
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    failed = [(p.returncode, err) for p, (_, err) in zip(procs, results, strict=True)]
    failed = [(code, err) for code, err in failed if code != 0]
    if failed:
        code, err = failed[0]
        raise BenchError(f"{len(failed)} of {CALLERS} `{short(cmd)}` failed ({code}): {tail(err)}")
    return elapsed, {out.strip().decode() for out, _ in results}


def run(ctx: Context) -> list[Row]:
    """Alternate fresh and expired bursts; count refreshes per burst."""
    from loopauth.emulator import OAuthEmulator

    venv = ctx.venv()
    emu = ctx.stack.enter_context(OAuthEmulator())
    work = ctx.scratch("concurrent")
    config = write_config(work, emu_config(emu.url))
    home = work / "home"
    env = child_env(home)
    login_no_browser(venv.loopauth, config, env, work)
    cmd = [venv.loopauth, "--config", str(config), "token"]
    _burst(cmd, env, work)  # warm-up: caches, page cache
    rounds = max(3, ctx.runs // 10)
    ctx.log(f"concurrent: {rounds} rounds of {CALLERS} fresh and {CALLERS} expired callers")
    fresh: list[list[float]] = []
    expired: list[list[float]] = []
    refreshes: list[int] = []
    fresh_refreshes: list[int] = []
    printed: list[int] = []
    for r in range(rounds):
        for kind in ("fresh", "expired") if r % 2 == 0 else ("expired", "fresh"):
            if kind == "expired":
                _expire(home)
            before = _issued(emu)
            elapsed, tokens = _burst(cmd, env, work)
            new = len(_issued(emu) - before)
            if kind == "expired":
                expired.append([elapsed])
                refreshes.append(new)
                printed.append(len(tokens))
            else:
                fresh.append([elapsed])
                fresh_refreshes.append(new)
        ctx.log(f"  round {r + 1}/{rounds} done (refreshes {refreshes[-1]})")
    row = ratio_row(
        NAME,
        f"{CALLERS} concurrent `token`, expired vs fresh",
        f"{CALLERS} callers, fresh token",
        f"{CALLERS} callers, expired token",
        fresh,
        expired,
        target=TARGET,
    )
    ok = all(n == 1 for n in refreshes) and not any(fresh_refreshes) and set(printed) == {1}
    row.condition_ok = ok
    row.note = (
        f"{rounds} rounds; refreshes per expired round: {','.join(map(str, refreshes))}"
        f" (fresh rounds: {','.join(map(str, fresh_refreshes))}); distinct tokens printed per"
        f" expired round: {','.join(map(str, printed))}" + ("" if ok else " — NOT exactly 1")
    )
    return [row]
