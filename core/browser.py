"""Open the system browser without putting the authorization URL on any command line.

A browser's argv is readable by every local user (/proc/PID/cmdline), and the URL carries the
login's `state`: with it, another user could inject their own authorization code. So the
browser is given a private local page (0600, in a 0700 folder, removed when the flow ends) that
forwards to the URL, as Jupyter does for its token. It is started by a small helper process
whose environment lacks the variables providers.yaml takes secrets from.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from . import paths, private

STALE = 3600.0  # seconds: a page left by a killed login is swept after this

# Run with -I -S: a webbrowser.py planted in the current folder must not be imported instead.
_OPENER = "import sys, webbrowser; sys.exit(0 if webbrowser.open(sys.argv[1]) else 1)"


def launch_dir() -> str:
    """Return the private folder for launch pages: `<home>/launch`, or one inside
    $LOOPAUTH_LAUNCH_DIR (a folder a sandboxed browser can read), which is left as it is."""
    chosen = os.environ.get("LOOPAUTH_LAUNCH_DIR")
    if not chosen:
        return os.path.join(paths.home(), "launch")
    owner = str(os.geteuid()) if hasattr(os, "geteuid") else os.environ.get("USERNAME", "me")
    return os.path.join(chosen, f"loopauth-launch-{owner}")


def write_page(url: str) -> str:
    """Write a private page that forwards to `url`; return its path."""
    folder = launch_dir()
    private.make_dirs(folder)
    private.secure_dir(folder)  # ours, 0700, and never through a link someone planted
    _sweep(folder)
    target = html.escape(url, quote=True)
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer">'
        f'<meta http-equiv="refresh" content="0;url={target}">'
        "<title>Signing in · loopauth</title></head>\n"
        f'<body><p>Taking you to the sign-in page: <a href="{target}">continue</a>.</p>'
        "</body></html>\n"
    )
    fd, path = tempfile.mkstemp(prefix="login-", suffix=".html", dir=folder)  # 0600, O_EXCL
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(page)
    return path


def open_page(path: str, hide_env: Iterable[str] = ()) -> bool:
    """Open a local page in the system browser; return False when none could be started."""
    hidden = set(hide_env)
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _OPENER, Path(path).as_uri()],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    except OSError:
        return False
    return done.returncode == 0


def remove_page(path: str | None) -> None:
    """Delete a launch page (the login it leads to has ended)."""
    if path:
        with contextlib.suppress(OSError):
            os.unlink(path)


_PAGE = re.compile(r"login-[A-Za-z0-9_]{8}\.html")  # what mkstemp above names them


def _sweep(folder: str) -> None:
    cutoff = time.time() - STALE
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if not _PAGE.fullmatch(entry.name):
                continue
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and st.st_mtime < cutoff:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
