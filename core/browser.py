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


SNAP_BIN = "/snap/bin"


def launch_dir() -> str:
    """Return the private folder for launch pages.

    $LOOPAUTH_LAUNCH_DIR if set; else, on Linux, a folder of the default browser's own when it
    is a snap or a flatpak (their sandbox can't read ~/.local/share); else `<home>/launch`.
    Inside a folder loopauth does not own, the pages go in a subfolder of their own.
    """
    chosen = os.environ.get("LOOPAUTH_LAUNCH_DIR") or sandbox_dir()
    if not chosen:
        return os.path.join(paths.home(), "launch")
    owner = str(os.geteuid()) if hasattr(os, "geteuid") else os.environ.get("USERNAME", "me")
    return os.path.join(chosen, f"loopauth-launch-{owner}")


def sandbox_dir() -> str | None:
    """Return a folder the default browser's sandbox can read, when it is a snap or flatpak."""
    if not sys.platform.startswith("linux"):
        return None
    home = os.path.expanduser("~")
    command = os.environ.get("BROWSER", "").split(os.pathsep)[0].split()
    if command:
        import shutil

        found = shutil.which(command[0]) or ""
        snap = os.path.basename(found) if found.startswith(SNAP_BIN + "/") else None
        app = None
    else:
        desktop = _default_browser()
        # Snaps install their desktop files as <snap>_<app>.desktop; flatpaks as <app id>.desktop.
        named = re.fullmatch(r"([a-z0-9][a-z0-9-]*)_[\w.-]+\.desktop", desktop)
        snap = named.group(1) if named else None
        app = desktop.removesuffix(".desktop") if desktop.count(".") >= 3 else None
    if snap and os.path.exists(os.path.join(SNAP_BIN, snap)):
        folder = os.path.join(home, "snap", snap, "common")  # the snap reads (and writes) here
    elif app:
        folder = os.path.join(home, ".var", "app", app)  # mapped at the same path in its sandbox
    else:
        return None
    return folder if os.path.isdir(folder) else None


def _default_browser() -> str:
    """Return the desktop file of the user's default browser, or "" (xdg-settings' answer)."""
    try:
        done = subprocess.run(
            ["xdg-settings", "get", "default-web-browser"],
            capture_output=True,
            text=True,
            timeout=3,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def write_page(url: str) -> str:
    """Write a private page that forwards to `url`; return its path."""
    folder = launch_dir()
    private.own_dir(folder)  # ours, 0700, and never through a link someone planted
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
    uri = Path(path).as_uri()
    if getattr(sys, "frozen", False):  # an app bundle: no Python to run the helper with
        import webbrowser

        return webbrowser.open(uri)
    hidden = set(hide_env)
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _OPENER, uri],
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
