"""The `loopauth` command line; `token` with a cached, fresh token never gets past the fast path.

`main` is the process: the fast path, then escaped output streams, logging and SIGTERM as
Ctrl+C, then the command. `run` parses and runs a command without touching any of those, so
tests call it in-process. Importing this package is cheap: the rest loads on first use.
"""

# PYTHON_ARGCOMPLETE_OK: argcomplete's global completion looks for this in the console
# script's module (here) within its first 1024 bytes.

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    import logging

    from ..command import Command


def main(argv: list[str] | None = None) -> int:
    """Run the CLI as a process: answer from the cache, or set the process up and run."""
    if argv is None:
        import os  # loaded by Python's own start-up: this costs one dict lookup

        if "_ARGCOMPLETE" in os.environ:  # the shell asks for TAB completions (completion.py)
            from .completion import complete

            return complete()
    argv = sys.argv[1:] if argv is None else argv
    from . import fastpath

    try:
        code = fastpath.try_token(argv)
        if code is not None:
            return code
        code = _full(argv)
        import gc

        # The process ends next: its last garbage collections would only delay the exit.
        gc.freeze()
        return code
    finally:
        fastpath.release()


def _full(argv: list[str]) -> int:
    from ..terminal import SafeStream

    # Provider text (errors, account labels, shop names) is printed in many places: escaping
    # control characters at the stream covers all of them, plugins' commands and logs included.
    real = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = SafeStream(real[0]), SafeStream(real[1])
    handler = None
    try:
        args = _parse(argv)
        if isinstance(args, int):
            return args
        if args.verbose:
            handler = _log_to_stderr(True)
        elif getattr(args, "command", None) not in LIGHT:
            # status and providers answered from the caches never log: they configure it
            # (through commands._config) only when they load providers.yaml after all.
            _log_to_stderr(False)
        _sigterm_as_interrupt()
        return _execute(args)
    finally:
        if handler is not None:
            import logging

            logging.getLogger("loopauth").removeHandler(handler)
        sys.stdout, sys.stderr = real


def run(argv: list[str]) -> int:
    """Parse and run a command; a LoopauthError becomes a message on stderr and its exit code."""
    args = _parse(argv)
    return args if isinstance(args, int) else _execute(args)


# Commands that can answer from the caches (and `--help`, no command): no logging set-up.
LIGHT = frozenset({"status", "providers", None})


def _command_of(argv: list[str]) -> str | None:
    """Return the command word of `argv` (the first argument that is not an option)."""
    args = iter(argv)
    for arg in args:
        if arg == "--config":
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def _parse(argv: list[str]) -> argparse.Namespace | int:
    from ..errors import LoopauthError
    from .parser import BUILTIN, build_parser

    try:  # building the parser loads plugins: two registering one command is an error too
        plugin_commands = None
        if _command_of(argv) in BUILTIN | {None}:
            plugin_commands = _snapshot_commands()  # their names and help are all it needs
        parser = build_parser(plugin_commands)
        if plugin_commands is None:
            from .. import snapshot

            snapshot.write()  # plugins are loaded now: the next --help or status need not
        command: list[str] | None = None
        if _command_of(argv) == "exec" and "--" in argv:  # everything after -- is the command
            cut = argv.index("--")
            argv, command = argv[:cut], argv[cut + 1 :]
        args = parser.parse_args(argv)
        if command is not None:
            args.argv = command
        return args
    except LoopauthError as exc:
        print(f"loopauth: {exc}", file=sys.stderr)
        return exc.exit_code


def _snapshot_commands() -> dict[str, Command] | None:
    from .. import snapshot
    from ..command import Command

    data = snapshot.read()
    commands = data.get("commands") if data else None
    if not isinstance(commands, dict):
        return None

    def unloaded(args: argparse.Namespace) -> int:  # never run: only built-in commands parse
        raise AssertionError("a plugin command parsed without its plugin")

    return {name: Command(name, str(text), unloaded) for name, text in commands.items()}


def _execute(args: argparse.Namespace) -> int:
    import os

    from ..errors import FlowCancelled, LoopauthError

    try:
        if not getattr(args, "command", None):
            from .parser import build_parser

            build_parser(_snapshot_commands()).print_help(sys.stderr)
            return 2
        return int(args.func(args))
    except LoopauthError as exc:
        print(f"loopauth: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\nloopauth: cancelled", file=sys.stderr)
        return FlowCancelled.exit_code
    except BrokenPipeError:  # `loopauth status | head -1`: the reader has all it wanted
        # Python would complain again when it flushes stdout at exit: point it at nothing.
        stdout = sys.__stdout__
        if stdout is not None:
            os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        return 141  # what a shell reports for a process ended by SIGPIPE
    except Exception as exc:  # a bug: say where, but not the message, which may hold a secret
        import traceback

        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{os.path.basename(frame.filename)}:{frame.lineno}"
        print(
            f"loopauth: internal error {type(exc).__name__} at {where}; please report it",
            file=sys.stderr,
        )
        return 1


def _log_to_stderr(verbose: bool) -> logging.Handler | None:
    """Send warnings, or with -v our own debug records, to stderr; return the -v handler."""
    import logging

    if not verbose:
        logging.basicConfig(format="loopauth: %(message)s", level=logging.WARNING)
        return None
    # Our logger only: urllib3's debug lines would print token URLs (TikTok's hold its secret).
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("loopauth: %(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("loopauth")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    return handler


def _sigterm_as_interrupt() -> None:
    import signal

    # SIGTERM gets the same clean exit as Ctrl+C: the listener's port is closed on the way out.
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):  # not the main thread (e.g. main() called from a thread)
        pass
