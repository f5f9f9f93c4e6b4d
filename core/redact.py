"""Keep secrets out of third-party debug logs (urllib3 logs whole URLs, TikTok's hold its secret).

loopauth's own logging never formats a secret; this covers the libraries it drives, for Python
API users who turn on DEBUG logging for everything.
"""

from __future__ import annotations

import logging
import threading

_secrets: set[str] = set()
_lock = threading.Lock()
PREFIXES = ("urllib3", "requests", "authlib")


class RedactingFilter(logging.Filter):
    """Replace every registered secret in a record's message with `***`."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _lock:
            values = sorted(_secrets, key=len, reverse=True)
        if not values:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the library's problem, not ours
            return True
        redacted = message
        for value in values:
            redacted = redacted.replace(value, "***")
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_filter = RedactingFilter()


def protect(*values: str | None) -> None:
    """Register secrets and make sure every library logger that exists redacts them."""
    with _lock:
        _secrets.update(v for v in values if v and len(v) >= 6)
    # Logger filters do not apply to child loggers, so attach to each one that exists.
    for name in list(logging.Logger.manager.loggerDict):
        if name.split(".")[0] in PREFIXES:
            logger = logging.getLogger(name)
            if _filter not in logger.filters:
                logger.addFilter(_filter)
