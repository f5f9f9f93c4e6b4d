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

Which browser (`choose_opener`): $BROWSER when set; under WSL, Windows' own (`wslview`, else
`explorer.exe`); else what `webbrowser` finds on the desktop. Never a text-mode browser: it
would take over the terminal the user is waiting in, so the helper runs in a session of its
own (no controlling terminal) without TERM, and text browsers named in $BROWSER are skipped.
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import re
import shlex
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import paths, private

log = logging.getLogger("loopauth.browser")

STALE = 3600.0  # seconds: a page left by a killed login is swept after this

# Run with -I -S: a webbrowser.py planted in the current folder must not be imported instead.
# It gets ready (imports webbrowser, finds the browsers) before the page comes on its stdin:
# its `file://` URI, or under WSL (argument `wsl`) its path, for Windows' opener to convert.
# The browser gets /dev/null as stdin, as before, not our pipe. Nothing before EOF: the login
# ended before a page was written, and nothing is opened.
_OPENER = """\
import os, sys
wsl = sys.argv[1:] == ["wsl"]
if not wsl:
    import webbrowser
    getattr(webbrowser, "register_standard_browsers", lambda: None)()
page = os.fsdecode(sys.stdin.buffer.read()).removesuffix("\\n")
null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)
os.close(null)
if not page:
    sys.exit(1)
if not wsl:
    sys.exit(0 if webbrowser.open(page) else 1)
import shutil, subprocess

def run(argv, **kw):
    try:
        return subprocess.run(argv, stdin=0, stderr=subprocess.DEVNULL, timeout=60, **kw)
    except (OSError, subprocess.SubprocessError):
        return None

view = shutil.which("wslview")
if view:
    done = run([view, page], stdout=subprocess.DEVNULL)
    sys.exit(0 if done and done.returncode == 0 else 1)
converter = shutil.which("wslpath")
done = converter and run([converter, "-w", page], stdout=subprocess.PIPE, text=True)
windows = done.stdout.strip() if done and done.returncode == 0 else ""

def find(name, usual):  # Windows' folders may be left off PATH (appendWindowsPath = false)
    return shutil.which(name) or (usual if os.path.isfile(usual) else None)

explorer = find("explorer.exe", "/mnt/c/Windows/explorer.exe")
cmd = find("cmd.exe", "/mnt/c/Windows/System32/cmd.exe")
# explorer.exe answers 1 even when it opened the page: that it ran is all it tells.
if windows and explorer and run([explorer, windows], stdout=subprocess.DEVNULL):
    sys.exit(0)
done = windows and cmd and run([cmd, "/c", "start", "", windows], stdout=subprocess.DEVNULL)
sys.exit(0 if done and done.returncode == 0 else 1)
"""

# Browsers that draw in the terminal: started from a login, they would take over the terminal
# the user is waiting in (and where the URL is shown).
TEXT_BROWSERS = frozenset(
    {"lynx", "w3m", "links", "links2", "elinks", "www-browser", "browsh", "carbonyl"}
)


@dataclass(frozen=True)
class Opener:
    """How the helper opens the page: `webbrowser` with this $BROWSER, or Windows' opener."""

    browser: str | None = None  # $BROWSER for the helper, text-mode browsers taken out
    wsl: bool = False  # under WSL: wslview, else explorer.exe, given the page's path


def is_wsl(environ: Mapping[str, str] | None = None) -> bool:
    """Return True under the Windows Subsystem for Linux."""
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return False
    if env.get("WSL_DISTRO_NAME") or env.get("WSL_INTEROP"):
        return True
    # Not the kernel's name: Docker Desktop's containers run on the same "microsoft" kernel,
    # and there no Windows program can be started. WSL registers this to start them.
    return os.path.exists("/proc/sys/fs/binfmt_misc/WSLInterop")


def _command_name(entry: str) -> str:
    """Return the program a $BROWSER entry runs, as `lynx` (no folder, no `.exe`)."""
    try:
        words = shlex.split(entry, posix=os.name != "nt")
    except ValueError:
        words = entry.split()
    if not words:
        return ""
    name = os.path.basename(words[0].strip("\"'")).lower()
    return name.removesuffix(".exe")


def opener_for(environ: Mapping[str, str] | None = None) -> Opener:
    """Return how the page would be opened here, whether or not there is a desktop."""
    env = os.environ if environ is None else environ
    entries = [e for e in env.get("BROWSER", "").split(os.pathsep) if e.strip()]
    kept = [e for e in entries if _command_name(e) not in TEXT_BROWSERS]
    if is_wsl(env) and (not kept or _command_name(kept[0]) == "wslview"):
        return Opener(wsl=True)  # wslview wants the page's path, not a file:// URI
    return Opener(browser=os.pathsep.join(kept) or None)


def choose_opener(environ: Mapping[str, str] | None = None) -> Opener | None:
    """Return how to open the page, or None when no browser should be started here.

    None on Linux without a desktop (no DISPLAY or WAYLAND_DISPLAY) and no usable $BROWSER,
    with a warning when $BROWSER named only text-mode browsers.
    """
    env = os.environ if environ is None else environ
    opener = opener_for(env)
    if opener.wsl or opener.browser:
        return opener
    skipped = [
        name
        for e in env.get("BROWSER", "").split(os.pathsep)
        if (name := _command_name(e)) in TEXT_BROWSERS
    ]
    if sys.platform.startswith("linux") and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        if skipped:
            log.warning(
                "$BROWSER names a text-mode browser (%s); it would take over this terminal: "
                "open the URL below instead",
                ", ".join(skipped),
            )
        return None
    if skipped:
        log.debug("skipping the text-mode browser in $BROWSER (%s)", ", ".join(skipped))
    return opener


SNAP_BIN = "/snap/bin"


def launch_dir(opener: Opener | None = None) -> str:
    """Return the private folder for launch pages (for the browser `opener` picks).

    $LOOPAUTH_LAUNCH_DIR if set; else, on Linux, a folder of the default browser's own when it
    is a snap or a flatpak (their sandbox can't read ~/.local/share); else `<home>/launch`.
    Inside a folder loopauth does not own, the pages go in a subfolder of their own.
    """
    if opener is None:
        opener = opener_for()
    # Windows' browser (WSL) reads the page through \\wsl.localhost\: no Linux sandbox applies.
    sandbox = None if opener.wsl else sandbox_dir(opener.browser or "")
    chosen = os.environ.get("LOOPAUTH_LAUNCH_DIR") or sandbox
    if not chosen:
        return os.path.join(paths.home(), "launch")
    owner = str(os.geteuid()) if hasattr(os, "geteuid") else os.environ.get("USERNAME", "me")
    return os.path.join(chosen, f"loopauth-launch-{owner}")


def sandbox_dir(browser: str | None = None) -> str | None:
    """Return a folder the default browser's sandbox can read, when it is a snap or flatpak.

    `browser` is the $BROWSER the helper gets (default: this process's).
    """
    if not sys.platform.startswith("linux"):
        return None
    home = os.path.expanduser("~")
    if browser is None:
        browser = os.environ.get("BROWSER", "")
    command = browser.split(os.pathsep)[0].split()
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
        self,
        hide_env: Iterable[str] = (),
        on_failure: Callable[[], None] | None = None,
        *,
        opener: Opener | None = None,
    ) -> None:
        self._on_failure = on_failure
        self._opener = opener_for() if opener is None else opener
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # open() and cancel() may race (a flow cancelled meanwhile)
        self._handed = False  # the helper got a page, or EOF
        self._opened = False  # ...a page
        self._folder: list[str | BaseException] = []
        self._finder = threading.Thread(target=self._find_folder, daemon=True)
        self._finder.start()
        if getattr(sys, "frozen", False):  # an app bundle: no Python to run the helper with
            return
        # Without TERM, webbrowser registers no console browser (lynx, w3m...); $BROWSER is
        # the one the opener chose, text-mode browsers taken out.
        hidden = {*hide_env, "TERM", "BROWSER"}
        env = {k: v for k, v in os.environ.items() if k not in hidden}
        if self._opener.browser:
            env["BROWSER"] = self._opener.browser
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _OPENER, "wsl" if self._opener.wsl else "uri"],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                # A session of its own: no controlling terminal for whatever browser it starts
                # to draw on (/dev/tty fails), nor does Ctrl+C in the terminal reach it.
                start_new_session=os.name == "posix",
            )
        except OSError as exc:
            log.debug("cannot start the browser helper: %s", exc)

    def _find_folder(self) -> None:
        try:
            self._folder.append(launch_dir(self._opener))
        except BaseException as exc:  # raised again, in the caller's thread, by folder()
            self._folder.append(exc)

    def folder(self) -> str:
        """Return the folder for the launch page (what `launch_dir()` says)."""
        self._finder.join()
        found = self._folder[0] if self._folder else launch_dir(self._opener)
        if isinstance(found, BaseException):
            raise found
        return found

    def open(self, path: str) -> bool:
        """Hand the page to the helper; return False when no browser could be started."""
        uri = Path(path).as_uri()
        if getattr(sys, "frozen", False):
            import webbrowser

            return webbrowser.open(uri)
        page = os.fsencode(path if self._opener.wsl else uri)
        proc = self._proc
        with self._lock:
            if proc is None or proc.stdin is None or self._handed:
                return False
            self._handed = True
        try:
            proc.stdin.write(page + b"\n")
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
