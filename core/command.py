"""`loopauth.command.Command`, the type plugins register in `register_commands`.

A plain class (not a dataclass): `loopauth --help` builds every command's parser, and importing
dataclasses would cost it more than the rest of its work.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable


class Command:
    """A `loopauth NAME` command: `configure` adds options, `run(args)` returns the exit code.

    Like the built-in commands it gets `[PROVIDER]` and `--account NAME`, plus the global
    `--config` and `-v`; a LoopauthError it raises becomes a message and its exit code.
    """

    __slots__ = ("configure", "help", "name", "run")

    def __init__(
        self,
        name: str,
        help: str,
        run: Callable[[argparse.Namespace], int],
        configure: Callable[[argparse.ArgumentParser], None] | None = None,
    ) -> None:
        self.name, self.help, self.run, self.configure = name, help, run, configure

    def __repr__(self) -> str:
        return f"Command(name={self.name!r}, help={self.help!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Command):
            return NotImplemented
        return (self.name, self.help, self.run, self.configure) == (
            other.name,
            other.help,
            other.run,
            other.configure,
        )

    __hash__ = None  # type: ignore[assignment]
