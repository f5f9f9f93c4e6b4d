"""`loopauth refresh --all`: refresh every due account, a few at a time, reporting each."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from ..errors import LoopauthError, NoTokenError, UsageError
from ..provider import Provider
from ..store import Store


def _accounts(
    config: Any, names: list[str], force: bool
) -> Iterator[tuple[Provider, Store, str, bool]]:
    """Yield every stored account with whether it is due (one at a time: 10,000 stay cheap)."""
    from ..stores import open_store

    for name in names:
        provider = config.providers[name]
        store = open_store(provider)
        leeway = provider.refresh_leeway
        for entry in store.entries(name):
            token = entry.token
            # Damaged and dead ones are included: their failure is worth reporting.
            # A token that never expires and has no refresh token never is, even forced.
            due = (
                token is None
                or bool(token.dead)
                or (not token.lasts and (force or not token.is_fresh(leeway)))
            )
            yield provider, store, entry.account_id, due


def _nothing_stored(config: Any, name: str) -> bool:
    """Return True for a provider that only lacks variables and has no stored accounts."""
    from ..stores import open_store

    partial = config.partial.get(name)
    if partial is None:
        return False
    try:
        return not open_store(partial).accounts(name)
    except LoopauthError:
        return False


def refresh_all(config: Any, provider: str | None, *, force: bool, jobs: int, as_json: bool) -> int:
    """Refresh what is due; one line (or a progress bar) per account; exit non-zero on failure."""
    from ..api import ensure_fresh
    from ..stores import open_store

    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1 (refreshes at once), not {jobs}")
    names = [config.select(provider).name] if provider else config.names()
    # A provider that can't be used (say, its secret's variable is unset) is reported, and the
    # others are still refreshed: a scheduled job must not stop for one of them. One that only
    # lacks variables and holds no tokens has nothing to refresh: not a failure.
    broken = [
        {
            "provider": n,
            "account_id": None,
            "error": str(config.errors[n]),
            "exit_code": config.errors[n].exit_code,
        }
        for n in names
        if n in config.errors and not (provider is None and _nothing_stored(config, n))
    ]
    total = 0
    usable = []
    for name in names:
        if name in config.errors:
            continue
        try:  # a store that can't be read (a planted folder, Redis down) stops only its provider
            total += len(open_store(config.providers[name]).accounts(name))
        except LoopauthError as exc:
            broken.append(
                {
                    "provider": name,
                    "account_id": None,
                    "error": str(exc),
                    "exit_code": exc.exit_code,
                }
            )
            continue
        usable.append(name)
    names = usable
    err = sys.stderr
    for row in broken:  # before a progress bar takes the line
        print(f"loopauth: {row['error']}", file=err, flush=True)
    bar = None
    if err.isatty() and not as_json:
        from tqdm import tqdm

        bar = tqdm(total=total, file=getattr(err, "raw", err), unit="account", leave=False)
    done: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = list(broken)
    lock = threading.Lock()

    def one(item: tuple[Provider, Store, str]) -> None:
        prov, store, account_id = item
        row: dict[str, Any] = {"provider": prov.name, "account_id": account_id}
        try:
            stored = store.read(prov.name, account_id)
            if stored.dead:  # still valid perhaps, but nobody can refresh it: log in again
                raise NoTokenError(
                    f"the provider rejected the refresh token ({stored.dead}); "
                    f"run: loopauth login {prov.name} --account {account_id}"
                )
            # Not forced unless asked: under the lock, one another process just refreshed counts.
            token = ensure_fresh(prov, account_id, store, force=force)
            row["expires_at"] = token.expires_at
        except LoopauthError as exc:
            row.update(error=str(exc), exit_code=exc.exit_code)
        except Exception as exc:  # a bug (ours or a plugin's): this account fails, not the run
            row.update(error=f"internal error {type(exc).__name__}", exit_code=1)
        with lock:
            (failed if "error" in row else done).append(row)
            if bar is not None:
                if "error" in row:
                    bar.write(f"FAILED {prov.name} {account_id}: {row['error']}", file=err)
                bar.update(1)
            elif not as_json or "error" in row:  # with --json too: cron mails stderr
                state = f"FAILED: {row['error']}" if "error" in row else "refreshed"
                print(f"{prov.name} {account_id}: {state}", file=err, flush=True)

    window = jobs * 4  # submitted ahead: memory stays bounded for 10,000 accounts
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending: set[Future[None]] = set()
        for prov, store, account_id, due in _accounts(config, names, force):
            if not due:
                if bar is not None:
                    with lock:
                        bar.update(1)  # counted too, so that the bar ends at 100%
                continue
            pending.add(pool.submit(one, (prov, store, account_id)))
            if len(pending) >= window:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    f.result()
        for f in pending:
            f.result()
    if bar is not None:
        bar.close()
    skipped = total - len(done) - (len(failed) - len(broken))
    unusable = f"; {len(broken)} provider(s) could not be used" if broken else ""
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
            f"refresh --all: {len(done)} refreshed, {len(failed) - len(broken)} failed, "
            f"{max(skipped, 0)} not due, of {total} accounts{unusable}",
            file=err,
        )
    return max((row["exit_code"] for row in failed), default=0)
