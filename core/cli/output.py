"""What the commands print: tokens, expiry times and `--output` files.

The fast path imports this module, so it imports nothing slow at the top.
"""

from __future__ import annotations

import json
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..token import Token


def token_output(token: Token, as_json: bool) -> str:
    """Return what `loopauth token` prints for a token."""
    if not as_json:
        return token.access_token
    return json.dumps(
        {
            "access_token": token.access_token,
            "token_type": token.token_type,
            "expires_at": token.expires_at,
            "provider": token.provider,
            "account_id": token.account_id,
            "account_label": token.account_label,
            "scopes": token.scopes,
        }
    )


def when(ts: float | None) -> str:
    """Return a local time with how far away it is: `2025-01-02 03:04:05 (in 5 min)`."""
    if ts is None:
        return "unknown"
    left = ts - time.time()
    try:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    except (OverflowError, ValueError, OSError):
        return f"at {ts!r} (not a representable time)"
    if left <= 0:
        return f"{stamp} (expired)"
    if left < 120:
        return f"{stamp} (in {left:.0f} s)"
    if left < 7200:
        return f"{stamp} (in {left / 60:.0f} min)"
    if left < 172800:
        return f"{stamp} (in {left / 3600:.0f} h)"
    return f"{stamp} (in {left / 86400:.0f} days)"


def write_output(target: str, data: dict[str, Any]) -> None:
    """Write a raw token response as JSON to `target`, a private file, or stdout for `-`."""
    from ..errors import UsageError
    from ..terminal import json_text

    text = json_text(data, indent=2, ensure_ascii=False) + "\n"
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    if os.path.isdir(target):
        raise UsageError(f"--output {target} is a directory; name a file")
    from .. import private

    try:
        private.make_dirs(os.path.dirname(os.path.abspath(target)))  # new folders 0700
        private.write(target, text.encode("utf-8"))  # 0600: it holds tokens
    except OSError as exc:
        raise UsageError(f"cannot write --output {target}: {exc.strerror or exc}") from None
