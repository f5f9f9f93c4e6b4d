"""Text from providers, made safe to print: no control sequences reach the user's terminal.

A provider's `error_description`, an account label or a shop name can carry ESC sequences that
retitle the terminal, clear it, or write the clipboard (OSC 52). The CLI writes through
SafeStream, so every path that prints is covered, and -v logs too.
"""

from __future__ import annotations

import json
import re

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs `loopauth --help` more than the rest of its imports
    from typing import Any, TextIO

# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional controls that
# reorder what a line appears to say.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """Return `text` with every control character shown as a visible escape (\\x1b)."""
    return UNSAFE.sub(_escape, text)


def json_text(data: Any, **kwargs: Any) -> str:
    """Return JSON in which control characters are \\u escapes (JSON dumps leaves C1 raw)."""
    return UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(data, **kwargs))


class SafeStream:
    """A text stream that passes everything through `printable`; `.raw` is the real stream."""

    def __init__(self, raw: TextIO) -> None:
        self.raw = raw

    def write(self, text: str) -> int:
        """Write `text` with control characters escaped."""
        return self.raw.write(printable(text))

    def writelines(self, lines: list[str]) -> None:
        """Write each line with control characters escaped."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Flush the real stream."""
        self.raw.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)
