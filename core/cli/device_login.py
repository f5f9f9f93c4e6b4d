"""`loopauth login --device`: show the code (and a QR code on a terminal), wait, save the token."""

from __future__ import annotations

import argparse
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

    from ..device import DeviceAuthorization

QR_BLOCKS = "\u2580\u2584\u2588"  # what segno's compact terminal drawing is made of


def login_device(args: argparse.Namespace, provider: Any) -> int:
    """Log in with the device authorization grant (RFC 8628) and store the token."""
    from ..device import DeviceFlow, describe

    flow = DeviceFlow(provider, account=args.account)
    err = sys.stderr
    tty = err.isatty()
    raw = getattr(err, "raw", err)  # our own control sequences, past SafeStream

    def announce(info: DeviceAuthorization) -> None:
        print(describe(provider.name, info), file=err, flush=True)
        if tty:
            print_qr(info.qr_uri, err, heading="Or scan this QR code:")
        else:
            limit = flow.expires_in if args.timeout is None else min(args.timeout, flow.expires_in)
            print(f"Waiting up to {limit:.0f} s for the approval", file=err, flush=True)

    def tick(left: float) -> None:
        mins, secs = divmod(int(left + 0.999), 60)
        raw.write(f"\r\x1b[2KWaiting for the approval: {mins}:{secs:02d} left (Ctrl+C to cancel)")
        raw.flush()

    try:
        token = flow.run(args.timeout, on_code=announce, on_tick=tick if tty else None)
    finally:
        if tty:
            raw.write("\r\x1b[2K")
            raw.flush()
    from .commands import logged_in

    return logged_in(provider.name, token, flow.saved_to, args.output)


def print_qr(uri: str, stream: TextIO, *, heading: str = "") -> bool:
    """Draw `uri` as a QR code when `stream` is a terminal that can show it; return if it did."""
    if not stream.isatty():
        return False  # a log file or a pipe gets the address, not a picture of it
    try:
        QR_BLOCKS.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False  # the terminal cannot show the block characters
    import io

    import segno

    try:
        qr = segno.make(uri, error="L", micro=False)
    except (segno.DataOverflowError, ValueError):  # too long for any QR code: the address only
        return False
    width = qr.symbol_size()[0]  # with the quiet zone scanners need
    if width > _columns(stream):
        return False  # wrapped lines would make it unreadable
    drawing = io.StringIO()
    qr.terminal(out=drawing, compact=True)
    if heading:
        stream.write(heading + "\n")
    stream.write(drawing.getvalue())
    stream.flush()
    return True


def _columns(stream: TextIO) -> int:
    """Return the terminal's width, 80 when it cannot be told."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 80
    return columns or 80  # a fresh pseudo-terminal reports 0 until it is sized
