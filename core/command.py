"""Extra CLI commands contributed by plugins (`register_commands`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """A `loopauth NAME` command: `configure` adds options, `run(args)` returns the exit code.

    Like the built-in commands it gets `[PROVIDER]` and `--account NAME`, plus the global
    `--config` and `-v`; a LoopauthError it raises becomes a message and its exit code.
    """

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    configure: Callable[[argparse.ArgumentParser], None] | None = None
