"""`loopauth refresh --all`: refresh every due account, a few at a time, reporting each."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from ..errors import LoopauthError
from ..provider import Provider
from ..store import Store


def _due(config: Any, names: list[str], force: bool) -> Iterator[tuple[Provider, Store, str]]:
    from ..stores import open_store

    for name in names:
        provider = config.providers[name]
        store = open_store(provider)
        leeway = provider.refresh_leeway
        for entry in store.entries(name):
            token = entry.token
            # Damaged and dead ones are included: their failure is worth reporting.
            if force or token is None or token.dead or not token.is_fresh(leeway):
                yield provider, store, entry.account_id


def refresh_all(config: Any, provider: str | None, *, force: bool, jobs: int, as_json: bool) -> int:
    """Refresh what is due; one line (or a progress bar) per account; exit non-zero on failure."""
    from ..api import ensure_fresh
    from ..stores import open_store

    names = [config.select(provider).name] if provider else config.names()
    for name in names:
        if name in config.errors:
            raise config.errors[name]
    total = sum(len(open_store(config.providers[n]).accounts(n)) for n in names)
    started = time.time()
    err = sys.stderr
    bar = None
    if err.isatty() and not as_json:
        from tqdm import tqdm

        bar = tqdm(total=total, file=getattr(err, "raw", err), unit="account", leave=False)
    done: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    lock = threading.Lock()

    def one(item: tuple[Provider, Store, str]) -> None:
        prov, store, account_id = item
        row: dict[str, Any] = {"provider": prov.name, "account_id": account_id}
        try:
            # Not forced unless asked: under the lock, one another process just refreshed counts.
            token = ensure_fresh(prov, account_id, store, force=force)
            row["expires_at"] = token.expires_at
            row["by_another"] = token.obtained_at < started
        except LoopauthError as exc:
            row.update(error=str(exc), exit_code=exc.exit_code)
        with lock:
            (failed if "error" in row else done).append(row)
            if bar is not None:
                if "error" in row:
                    bar.write(f"FAILED {prov.name} {account_id}: {row['error']}", file=err)
                bar.update(1)
            elif not as_json:
                state = f"FAILED: {row['error']}" if "error" in row else "refreshed"
                print(f"{prov.name} {account_id}: {state}", file=err, flush=True)

    window = max(1, jobs) * 4  # submitted ahead: memory stays bounded for 10,000 accounts
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        pending: set[Future[None]] = set()
        for item in _due(config, names, force):
            pending.add(pool.submit(one, item))
            if len(pending) >= window:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    f.result()
        for f in pending:
            f.result()
    if bar is not None:
        bar.close()
    skipped = total - len(done) - len(failed)
    if as_json:
        print(
            json.dumps(
                {
                    "refreshed": len(done),
                    "failed": failed,
                    "not_due": max(skipped, 0),
                    "accounts": total,
                },
                indent=2,
            )
        )
    else:
        print(
            f"refresh --all: {len(done)} refreshed, {len(failed)} failed, "
            f"{max(skipped, 0)} not due, of {total} accounts",
            file=err,
        )
    return max((row["exit_code"] for row in failed), default=0)
