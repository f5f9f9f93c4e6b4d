"""Open the system browser without putting the authorization URL on any command line.

A browser's argv is readable by every local user (/proc/PID/cmdline), and the URL carries the
login's `state`: with it, another user could inject their own authorization code. So the
browser is given a private local page (0600, in a 0700 folder, removed when the flow ends) that
forwards to the URL, as Jupyter does for its token. It is started by a small helper process
whose environment lacks the variables providers.yaml takes secrets from.

The helper is started early (`Launcher`), while the login is still being prepared: it imports
`webbrowser` and looks for the browsers meanwhile, then reads the page's `file://` URI from its
stdin (never its command line). Nobody waits for it to end: a browser command that blocks
until the browser is closed must not hold up the login.
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import re
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from . import paths, private

log = logging.getLogger("loopauth.browser")

STALE = 3600.0  # seconds: a page left by a killed login is swept after this

# Run with -I -S: a webbrowser.py planted in the current folder must not be imported instead.
# It gets ready (imports webbrowser, finds the browsers) before the page's URI comes on its
# stdin; the browser gets /dev/null as stdin, as before, not our pipe. An empty line or EOF: the
# login ended before a page was written, and nothing is opened.
_OPENER = """\
import os, sys, webbrowser
getattr(webbrowser, "register_standard_browsers", lambda: None)()
uri = sys.stdin.readline().strip()
null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)
os.close(null)
sys.exit(0 if uri and webbrowser.open(uri) else 1)
"""


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


def write_page(url: str, folder: str | None = None) -> str:
    """Write a private page that forwards to `url` (into `folder`, default `launch_dir()`)."""
    folder = folder or launch_dir()
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


class Launcher:
    """Opens one launch page in the system browser through a helper started ahead of time.

    Creating it starts the helper (with the variables named in `hide_env` removed from its
    environment) and, in a thread, works out the launch folder (`xdg-settings` may be asked);
    both overlap whatever the caller does before it has a page. `open(path)` hands the page to
    the helper and returns at once; `cancel()` lets an unused helper end without opening
    anything. The helper is reaped by a daemon thread, which calls `on_failure` when the helper
    took a page but reported that no browser could be started.
    """

    def __init__(
        self, hide_env: Iterable[str] = (), on_failure: Callable[[], None] | None = None
    ) -> None:
        self._on_failure = on_failure
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # open() and cancel() may race (a flow cancelled meanwhile)
        self._handed = False  # the helper got a page, or EOF
        self._opened = False  # ...a page
        self._folder: list[str | BaseException] = []
        self._finder = threading.Thread(target=self._find_folder, daemon=True)
        self._finder.start()
        if getattr(sys, "frozen", False):  # an app bundle: no Python to run the helper with
            return
        hidden = set(hide_env)
        env = {k: v for k, v in os.environ.items() if k not in hidden}
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _OPENER],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except OSError as exc:
            log.debug("cannot start the browser helper: %s", exc)

    def _find_folder(self) -> None:
        try:
            self._folder.append(launch_dir())
        except BaseException as exc:  # raised again, in the caller's thread, by folder()
            self._folder.append(exc)

    def folder(self) -> str:
        """Return the folder for the launch page (what `launch_dir()` says)."""
        self._finder.join()
        found = self._folder[0] if self._folder else launch_dir()
        if isinstance(found, BaseException):
            raise found
        return found

    def open(self, path: str) -> bool:
        """Hand the page to the helper; return False when no browser could be started."""
        uri = Path(path).as_uri()
        if getattr(sys, "frozen", False):
            import webbrowser

            return webbrowser.open(uri)
        proc = self._proc
        with self._lock:
            if proc is None or proc.stdin is None or self._handed:
                return False
            self._handed = True
        try:
            proc.stdin.write(uri.encode() + b"\n")
            proc.stdin.close()
        except OSError:  # the helper is gone already
            self._reap()
            return False
        self._opened = True
        threading.Thread(target=self._reap, name="loopauth-browser-helper", daemon=True).start()
        return True

    def cancel(self) -> None:
        """Let a helper that got no page end without opening anything."""
        proc = self._proc
        with self._lock:
            if proc is None or self._handed:
                return
            self._handed = True
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()  # EOF: it exits at once
        threading.Thread(target=self._reap, daemon=True).start()

    def _reap(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        code = proc.wait()
        if code != 0 and self._opened and self._on_failure is not None:
            self._on_failure()


def open_page(path: str, hide_env: Iterable[str] = ()) -> bool:
    """Open a local page in the system browser; return False when none could be started.

    Returns once the helper has the page, without waiting for the browser (see `Launcher`).
    """
    return Launcher(hide_env).open(path)


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
