"""3. One account among 10,000 against the same account alone, by id and by label."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from harness import (
    Context,
    Row,
    Target,
    child_env,
    emu_config,
    interleaved,
    ratio_row,
    split_rounds,
    write_config,
)

NAME = "accounts"
TITLE = "10,000 accounts"
DESCRIPTION = """\
Two `LOOPAUTH_HOME`s with the same provider: one holds only account `shop-05000`
("Shop 5000"), the other 10,000 accounts `shop-00001`…`shop-10000` ("Shop 1"…"Shop 10000"),
seeded through `TokenStore(home).save_many` (or `save` in a loop where that does not exist),
valid for years. `loopauth --config CFG token --account shop-05000` (by id) and
`--account "Shop 5000"` (by label) are timed in both homes (wheel venv), interleaved; the row
is the 10,000-account home against the one-account home. Target: ≤ 1.2x, both rows.
A third row: `loopauth status` over the 10,000 accounts (the whole table, on a pipe) against a
script that reads and parses the same 10,000 token files by hand (`json.loads` of each, sorted
listing), both in the wheel venv. Target: ≤ 1.5x."""

BY_HAND = """\
import json, os, sys
folder = sys.argv[1]
for name in sorted(os.listdir(folder)):
    if name.endswith(".json"):
        with open(os.path.join(folder, name), "rb") as f:
            json.loads(f.read())
"""
STATUS_TARGET = Target("<=", 1.5)

TARGET = Target("<=", 1.2)
COUNT = 10_000
PICK = 5000


def _token(i: int, expires: float) -> Any:
    from loopauth.token import Token

    return Token(
        secrets.token_urlsafe(32),
        provider="emu",
        account_id=f"shop-{i:05d}",
        account_label=f"Shop {i}",
        expires_at=expires,
        scopes=["openid", "email"],
    )


def seed(home: Path, numbers: range | list[int]) -> str:
    """Store one token per account number; return how (save_many or a save loop)."""
    from loopauth.store import TokenStore

    store = TokenStore(str(home))
    expires = time.time() + 10 * 365 * 86400
    tokens = [_token(i, expires) for i in numbers]
    save_many = getattr(store, "save_many", None)
    if callable(save_many):
        save_many(tokens)
        return "save_many"
    for token in tokens:
        store.save(token)
    return "save loop"


def run(ctx: Context) -> list[Row]:
    """Seed both homes, then time the lookup by id and by label in each."""
    from loopauth.emulator import OAuthEmulator

    venv = ctx.venv()
    emu = ctx.stack.enter_context(OAuthEmulator())
    work = ctx.scratch("accounts")
    config = write_config(work, emu_config(emu.url))
    one, many = work / "one", work / "many"
    seed(one, [PICK])
    start = time.perf_counter()
    how = seed(many, range(1, COUNT + 1))
    ctx.log(f"accounts: seeded {COUNT:,} tokens with {how} in {time.perf_counter() - start:.1f} s")
    base = [venv.loopauth, "--config", str(config), "token", "--account"]
    by_id, by_label = f"shop-{PICK:05d}", f"Shop {PICK}"
    commands = {
        "one-id": ([*base, by_id], child_env(one)),
        "many-id": ([*base, by_id], child_env(many)),
        "one-label": ([*base, by_label], child_env(one)),
        "many-label": ([*base, by_label], child_env(many)),
        "by-hand": (
            [venv.python, "-c", BY_HAND, str(many / "tokens" / "emu")],
            child_env(many),
        ),
        "status": ([venv.loopauth, "--config", str(config), "status"], child_env(many)),
    }
    rounds = split_rounds(max(6, ctx.runs // 2), 5)
    ctx.log(f"accounts: {sum(rounds)} runs of each lookup")
    times = interleaved(commands, work, rounds, log=ctx.log)
    return [
        ratio_row(
            NAME,
            f"`token --account {by_id}` (id), 10,000 accounts vs 1",
            "same, 1 account",
            "same, 10,000 accounts",
            times["one-id"],
            times["many-id"],
            target=TARGET,
        ),
        ratio_row(
            NAME,
            f'`token --account "{by_label}"` (label), 10,000 accounts vs 1',
            "same, 1 account",
            "same, 10,000 accounts",
            times["one-label"],
            times["many-label"],
            target=TARGET,
        ),
        ratio_row(
            NAME,
            "`status` over 10,000 accounts vs reading and parsing them by hand",
            "10,000 files read + json.loads",
            "`loopauth status`, 10,000 rows",
            times["by-hand"],
            times["status"],
            target=STATUS_TARGET,
        ),
    ]
