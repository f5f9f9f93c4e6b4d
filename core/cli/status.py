"""`loopauth status`: one row per stored account, streamed, so 10,000 accounts stay cheap."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

from ..store import Store
from ..token import Token
from .output import when

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the light commands (status, providers) more than their work
    from typing import Any

COLUMNS = ("PROVIDER", "ACCOUNT", "LABEL", "ACCESS TOKEN", "REFRESH TOKEN", "SCOPES", "STORE")
WIDTHS = (
    14,
    22,
    22,
    35,
    35,
    24,
)  # `... (in 36500 days)` fits  # the last column takes what it needs


def _row(cells: tuple[str, ...]) -> str:
    parts = [cell.ljust(width) for cell, width in zip(cells, WIDTHS, strict=False)]
    return "  ".join([*parts, *cells[len(WIDTHS) :]]).rstrip()


def _refresh_state(token: Token) -> str:
    if token.dead:
        return "dead: log in again"
    if not token.refresh_token:
        return "none"
    if token.refresh_expires_at is None:
        return "yes (no expiry given)"
    return when(token.refresh_expires_at)


def show_status(
    names: list[str],
    errors: dict[str, str],
    store_of: Callable[[str], Store | None],
    *,
    as_json: bool,
    missing: dict[str, list[str]] | None = None,
) -> int:
    """Print every stored account of `names`; return 2 for a broken provider, 6 for damage.

    A provider in `missing` only lacks environment variables: its accounts are shown (reading
    them needs none of its secrets) with a note on what to set before a login or refresh.
    """
    out = sys.stdout
    missing = missing or {}
    broken = {name: errors[name] for name in names if name in errors}
    for error in broken.values():
        print(f"loopauth: {error}", file=sys.stderr)
    damaged = 0
    first = True
    marked = False
    if as_json:
        out.write("[")
    else:
        out.write(_row(COLUMNS) + "\n")
    now = time.time()
    for name in names:
        if name in broken:
            continue
        store = store_of(name)
        if store is None:  # its store's own settings need the missing variables
            if not as_json:
                out.write(f"{name}: set {', '.join(missing.get(name, []))} to read its tokens\n")
            continue
        default = store.get_default(name)
        where = store.describe()
        shown = 0
        lines: list[str] = []
        for entry in store.entries(name):
            shown += 1
            token = entry.token
            if as_json:
                row: dict[str, Any] = (
                    token.public_dict()
                    if token is not None
                    else {"provider": name, "account_id": entry.account_id}
                )
                row.update(
                    expired=None if token is None else not token.is_fresh(0, now),
                    damaged=entry.problem,
                    default=entry.account_id == default,
                    store=where,
                )
                lines.append(("" if first else ",") + "\n  " + json.dumps(row))
                first = False
            elif token is None:
                damaged += 1
                print(f"loopauth: {entry.problem}", file=sys.stderr)
                cells = (name, entry.account_id, "", "DAMAGED (see above)", "", "", where)
                lines.append(_row(cells) + "\n")
            else:
                mark = "*" if entry.account_id == default else ""
                marked = marked or bool(mark)
                cells = (
                    name,
                    mark + token.account,
                    token.account_label or "",
                    when(token.expires_at),
                    _refresh_state(token),
                    " ".join(token.scopes) or "(none)",
                    where,
                )
                lines.append(_row(cells) + "\n")
            if token is None and as_json:
                damaged += 1
            if len(lines) >= 256:  # written in batches: bounded memory, few system calls
                out.write("".join(lines))
                lines.clear()
        out.write("".join(lines))
        if as_json:
            pass
        elif name in missing:
            state = "" if shown else "not logged in; "
            out.write(f"{name}: {state}to log in or refresh, set {', '.join(missing[name])}\n")
        elif not shown:
            out.write(f"{name}: not logged in (run: loopauth login {name})\n")
    if as_json:
        out.write("\n]\n" if not first else "]\n")
    elif marked:
        out.write("(* the provider's default account: loopauth switch PROVIDER ACCOUNT)\n")
    out.flush()
    if broken:
        return 2
    return 6 if damaged else 0
