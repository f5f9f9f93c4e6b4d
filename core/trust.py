"""Approval of providers.yaml files found in the current folder, like direnv's `allow`.

A folder the user `cd`s into (a cloned repository, a download) may ship a providers.yaml whose
endpoints point anywhere. It is used only after `loopauth trust`, which records its absolute
path and the SHA-256 of its content in the data home; any change needs a new approval.
"""

from __future__ import annotations

import json
import os

from . import paths, private

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

FILE = "trusted.json"
VERSION = 1


def list_path() -> str:
    """Return the trust list's path."""
    return os.path.join(paths.home(), FILE)


def digest(data: bytes) -> str:
    """Return the hash recorded for a file's content."""
    return private.sha256(data)


def _key(path: str) -> str:
    # The real path: the same file reached through a linked folder is the same approval.
    return os.path.normcase(os.path.realpath(path))


def load() -> dict[str, str]:
    """Return {absolute path: sha256} of approved files; a damaged list approves nothing."""
    try:
        raw = private.read(list_path(), 1 << 20, "the trust list")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        return {}
    return {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, str)}


def file_problem(path: str) -> str | None:
    """Return why a providers.yaml may never be approved (another user's, or writable by others)."""
    try:
        why = private.problem(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if why and "writable" in why:
        import shlex  # off the cached-token path, which only needs the answer

        why += f" (if that is yours alone: chmod go-w {shlex.quote(path)})"
    return why


def status(path: str, data: bytes) -> str:
    """Return "approved", "changed" (approved with other content) or "unknown" for a file."""
    recorded = load().get(_key(path))
    if recorded is None:
        return "unknown"
    return "approved" if recorded == digest(data) else "changed"


def is_trusted(path: str, data: bytes) -> bool:
    """Return True when `data` is the approved content of the file at `path`."""
    return file_problem(path) is None and status(path, data) == "approved"


def approve(path: str, data: bytes) -> str:
    """Record `data` as the approved content of `path`; return the digest."""
    _update(lambda files: files.__setitem__(_key(path), digest(data)))
    return digest(data)


def revoke(path: str) -> bool:
    """Forget an approval; return False when there was none."""
    removed: list[str | None] = []
    _update(lambda files: removed.append(files.pop(_key(path), None)))
    return removed[0] is not None


def _update(change: Callable[[dict[str, str]], object]) -> None:
    home = paths.home()
    private.own_dir(home, follow=True)
    with private.lock(os.path.join(home, "trusted.lock"), timeout=30):
        files = load()
        change(files)
        text = json.dumps({"version": VERSION, "files": files}, indent=2, sort_keys=True)
        private.write(list_path(), text.encode())
