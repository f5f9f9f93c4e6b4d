"""The `loopauth` command line; `token` with a cached, fresh token never gets past fastpath."""

from __future__ import annotations

import sys

EXIT_OK, EXIT_USAGE, EXIT_DENIED, EXIT_TIMEOUT, EXIT_PROVIDER, EXIT_NO_TOKEN = 0, 2, 3, 4, 5, 6


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    args = sys.argv[1:] if argv is None else argv
    from . import fastpath

    code = fastpath.try_token(args)
    if code is not None:
        return code
    from ._commands import run

    return run(args)
