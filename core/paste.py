"""The paste prompt: the user pastes the address the browser ended on, racing the listener.

For logins where the browser runs on another machine (SSH, a container, a server) and the
redirect to the loopback listener cannot arrive: the address bar still shows it, and pasting
it (or just the code) here completes the login with the same checks as the listener's.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from .flow import Flow

POLL = 0.2  # seconds: how soon a prompt notices that the listener won


class PastePrompt:
    """Reads pasted lines from `source` in a daemon thread and hands each to `flow.paste`."""

    def __init__(self, flow: Flow, source: TextIO, out: TextIO, redirect_uri: str = "") -> None:
        self.flow, self.source, self.out = flow, source, out
        self.redirect_uri = redirect_uri
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loopauth-paste", daemon=True)

    def start(self) -> None:
        """Print the prompt and start reading."""
        self._say(
            "If the page after you allow access does not load (the browser is on another "
            "machine), copy the address it shows and paste it here, or just the code:"
        )
        hint = ssh_forward_hint(self.redirect_uri)
        if hint:
            self._say(hint)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading (the flow ended some other way)."""
        self._stop.set()

    def _say(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            print(text, file=self.out, flush=True)

    def _run(self) -> None:
        for line in self._lines():
            if self.flow.state.finished or self._stop.is_set():
                return
            if not line.strip():
                continue
            why = self.flow.paste(line)
            if why is None:
                return  # taken: the flow ends with the token or the error
            if self.flow.state.finished:
                return
            self._say(f"loopauth: not taken: {why}. Paste the address again:")

    def _lines(self) -> Iterator[str]:
        """Yield lines until EOF or stop(); on POSIX without blocking past the flow's end."""
        fd = _fileno(self.source)
        if fd is None or os.name != "posix":
            # No select() on a Windows console: a blocking read in this daemon thread, which
            # the process leaves behind when the login ends.
            while not self._stop.is_set():
                try:
                    line = self.source.readline()
                except (OSError, ValueError):
                    return
                if not line:
                    return
                yield line
            return
        import select

        pending = b""
        while not self._stop.is_set() and not self.flow.state.finished:
            try:
                ready, _, _ = select.select([fd], [], [], POLL)
            except (OSError, ValueError):
                return
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                if pending:
                    yield pending.decode("utf-8", "replace")
                return
            pending += chunk
            while b"\n" in pending:
                raw, pending = pending.split(b"\n", 1)
                yield raw.decode("utf-8", "replace")
            if len(pending) > 65536:  # no line end in sight: not something to parse
                pending = b""


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def stdin_is_terminal() -> bool:
    """Return True when standard input is a terminal someone can paste into."""
    import sys

    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def ssh_forward_hint(redirect_uri: str) -> str | None:
    """In an SSH session without a display: the `ssh -L` line that forwards the listener."""
    from urllib.parse import urlsplit

    session = os.environ.get("SSH_CONNECTION", "").split()
    if len(session) != 4 or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    server, ssh_port = session[2], session[3]
    parts = urlsplit(redirect_uri)
    if not parts.port:
        return None
    host = parts.hostname or "127.0.0.1"
    target = f"[{host}]" if ":" in host else host
    if ":" in server:
        server = f"[{server}]"
    try:
        import getpass

        user = getpass.getuser() + "@"
    except (KeyError, OSError, ImportError):  # no name for this uid (a container)
        user = ""
    port_opt = "" if ssh_port == "22" else f" -p {ssh_port}"
    return (
        "Or, on the machine with the browser, forward the listener's port first and the login "
        f"completes by itself (with the host name you reach this machine by, if {server} is "
        f"not it):\n  ssh -N -L {parts.port}:{target}:{parts.port}{port_opt} {user}{server}"
    )
