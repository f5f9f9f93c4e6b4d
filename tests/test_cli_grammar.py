"""The fast path and the full parser read the command line alike; `run()` leaves the process be."""

from __future__ import annotations

import argparse
import itertools
import logging
import signal
import sys
from pathlib import Path

import pytest

from loopauth.cli import fastpath, run
from loopauth.cli.parser import build_parser
from loopauth.errors import UsageError
from loopauth.testing import cli, login, write_config

# (argv, what the fast path makes of it: (config, provider, account, json), or None to decline)
CASES: list[tuple[list[str], tuple[str | None, str | None, str | None, bool] | None]] = [
    (["token"], (None, None, None, False)),
    (["token", "prov"], (None, "prov", None, False)),
    (["--config", "F", "token"], ("F", None, None, False)),
    (["--config=F", "token"], ("F", None, None, False)),
    (["token", "--config", "F"], ("F", None, None, False)),
    (["token", "--config=F"], ("F", None, None, False)),
    (["--config", "A", "token", "--config", "B"], ("B", None, None, False)),
    (["token", "prov", "--account", "a", "--json"], (None, "prov", "a", True)),
    (["token", "--account=a"], (None, None, "a", False)),
    (["token", "--account", "a", "prov"], (None, "prov", "a", False)),
    (["token", "--json", "prov"], (None, "prov", None, True)),
    (["--config", "token", "token"], ("token", None, None, False)),
    (["token", "--account", "token"], (None, None, "token", False)),
    (["token", "--account=--json"], (None, None, "--json", False)),
    (["token", "--config="], ("", None, None, False)),
    (["token", ""], (None, "", None, False)),
    # -v means the full CLI, with its debug log
    (["-v", "token"], None),
    (["token", "-v"], None),
    (["token", "--verbose"], None),
    # options only the full parser knows, or spells differently
    (["token", "--output", "-"], None),
    (["token", "--acc", "a"], None),  # argparse's abbreviations
    (["token", "--account", "-"], None),
    (["token", "--config", "-x"], None),
    (["token", "--", "prov"], None),
    (["token", "--json=yes"], None),
    # not `token`, or not a command line at all
    ([], None),
    (["--config", "F"], None),
    (["status"], None),
    (["--account", "a", "token"], None),
    (["--json", "token"], None),
    (["token", "a", "b"], None),
    (["token", "--config"], None),
    (["token", "--account"], None),
    (["--version"], None),
    (["-h"], None),
    (["tokens"], None),
    (["token", "\x1b[2J"], (None, "\x1b[2J", None, False)),
]


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return build_parser()


def full(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | None:
    """What the full parser makes of `argv`, or None for a usage error."""
    try:
        return parser.parse_args(argv)
    except UsageError:
        return None


def assert_agree(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    fast = fastpath.parse(argv)
    if fast is None:
        return
    args = full(parser, argv)
    assert args is not None, f"the fast path accepts {argv} but argparse does not"
    assert (args.command, args.verbose, args.output) == ("token", False, None), argv
    assert (args.config, args.provider, args.account, args.json) == fast, argv


@pytest.mark.parametrize(("argv", "expected"), CASES, ids=[repr(c[0]) for c in CASES])
def test_fast_path_and_full_parser_agree(
    parser: argparse.ArgumentParser, argv: list[str], expected: object
) -> None:
    assert fastpath.parse(argv) == expected
    assert_agree(parser, argv)


def test_every_short_command_line_is_read_alike(parser: argparse.ArgumentParser) -> None:
    words = ["token", "p", "--config", "F", "--config=G", "--account", "a", "--account=b"]
    words += ["--json", "-v", "--output", "-", "--"]
    accepted = 0
    for n in range(5):
        for argv in itertools.product(words, repeat=n):
            assert_agree(parser, list(argv))
            accepted += fastpath.parse(list(argv)) is not None
    assert accepted > 100  # the comparison is not vacuous


def test_global_options_work_before_and_after_every_command(
    parser: argparse.ArgumentParser,
) -> None:
    for name in ("providers", "login", "token", "refresh", "status", "logout", "trust"):
        before = parser.parse_args(["-v", "--config", "F", name])
        after = parser.parse_args([name, "--config", "F", "-v"])
        assert (before.config, before.verbose) == (after.config, after.verbose) == ("F", True)
        neither = parser.parse_args([name])
        assert (neither.config, neither.verbose) == (None, False)


def test_config_after_the_command(config: Path) -> None:
    assert login("--config", str(config), "login").returncode == 0
    fast = cli("token", "--config", str(config))  # answered from the cache
    assert fast.returncode == 0 and fast.stdout.strip(), fast.stderr
    slow = cli("token", "--config", str(config), "-v")  # the full CLI
    assert slow.returncode == 0 and slow.stdout == fast.stdout, slow.stderr
    status = cli("status", "--config", str(config))
    assert status.returncode == 0
    assert status.stdout.splitlines()[1].split()[:3] == ["emu", "user-1", "ada@example.test"]


def process_state() -> tuple[object, ...]:
    return (
        signal.getsignal(signal.SIGTERM),
        list(logging.getLogger("loopauth").handlers),
        logging.getLogger("loopauth").level,
        list(logging.getLogger().handlers),
        sys.stdout,
        sys.stderr,
    )


@pytest.mark.parametrize("verbose", [[], ["-v"]])
def test_run_reports_a_config_error_in_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], verbose: list[str]
) -> None:
    before = process_state()
    missing = tmp_path / "missing.yaml"
    assert run([*verbose, "token", "--config", str(missing)]) == 2
    assert capsys.readouterr().err == f"loopauth: config file {missing} does not exist\n"
    broken = write_config(tmp_path / "broken.yaml", "providers:\n  emu: [\n")
    assert run(["--config", str(broken), *verbose, "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"loopauth: {broken}:") and err.count("\n") == 1
    assert process_state() == before


def test_run_reports_a_usage_error_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    before = process_state()
    assert run(["token", "--config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("loopauth: argument --config: expected one argument\nusage:")
    assert run([]) == 2 and "COMMAND" in capsys.readouterr().err  # help, on stderr
    assert process_state() == before
