"""5. In-process `loopauth.get_token` against reading and parsing the token file by hand."""

from __future__ import annotations

import json
import os
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from harness import (
    BenchError,
    Context,
    Row,
    Target,
    child_env,
    emu_config,
    login_no_browser,
    ratio_row,
    write_config,
)

NAME = "in-process"
TITLE = "In-process get_token"
DESCRIPTION = """\
In one process (the bench's own interpreter, loopauth imported once): a call of
`loopauth.get_token("emu", config=CFG)` returning the valid stored token, against
`json.loads(open(path, "rb").read())` of that token's file (`TokenStore(home).path_for`).
timeit-style: each repeat runs enough calls for ≥ 0.2 s, per-call time; repeats of the two
alternate. Target: ≤ 3x."""

TARGET = Target("<=", 3.0)
MIN_REPEAT_SECONDS = 0.2


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _calls_for(fn: Callable[[], Any]) -> int:
    """How many calls take at least MIN_REPEAT_SECONDS (timeit's autorange, with our floor)."""
    timer = timeit.Timer(fn)
    number = 1
    while True:
        if timer.timeit(number) >= MIN_REPEAT_SECONDS:
            return number
        number *= 2 if number < 8 else 4


def run(ctx: Context) -> list[Row]:
    """Log in with the CLI, then time both in this process."""
    import loopauth
    from loopauth.emulator import OAuthEmulator
    from loopauth.store import TokenStore

    venv = ctx.venv()
    emu = ctx.stack.enter_context(OAuthEmulator())
    work = ctx.scratch("inprocess")
    config = write_config(work, emu_config(emu.url))
    home = work / "home"
    login_no_browser(venv.loopauth, config, child_env(home), work)
    token = TokenStore(str(home)).find("emu")
    path = TokenStore(str(home)).path_for("emu", token.account)
    cfg = str(config)

    def by_hand() -> Any:
        with open(path, "rb") as f:
            return json.loads(f.read())

    def by_api() -> Any:
        return loopauth.get_token("emu", config=cfg)

    with _environ({"LOOPAUTH_HOME": str(home)}):
        if by_api().access_token != by_hand()["access_token"]:
            raise BenchError("get_token and the token file disagree")
        repeats = max(5, ctx.runs // 8)
        numbers = {"hand": _calls_for(by_hand), "api": _calls_for(by_api)}
        ctx.log(f"in-process: {repeats} repeats of {numbers['api']} get_token calls")
        hand: list[list[float]] = []
        api: list[list[float]] = []
        for r in range(repeats):
            order = [("hand", by_hand, hand), ("api", by_api, api)]
            for key, fn, out in order if r % 2 == 0 else order[::-1]:
                out.append([timeit.Timer(fn).timeit(numbers[key]) / numbers[key]])
    return [
        ratio_row(
            NAME,
            "`get_token()` in-process vs reading + parsing the token file",
            "`json.loads(open(path, 'rb').read())`",
            '`loopauth.get_token("emu", config=CFG)`',
            hand,
            api,
            target=TARGET,
            note=f"per call; {repeats} repeats of {numbers['api']:,} vs {numbers['hand']:,} calls",
        )
    ]
