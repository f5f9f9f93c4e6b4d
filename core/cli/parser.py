"""The command-line grammar: argparse for every command, plugins' `Command`s included."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .. import __version__
from ..command import Command
from ..errors import UsageError
from . import api_cmd, commands, completion

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["BUILTIN", "Command", "build_parser"]

# The built-in commands: any other name is a plugin's, and needs the plugins loaded.
BUILTIN = frozenset(
    {
        "providers",
        "login",
        "token",
        "refresh",
        "status",
        "logout",
        "switch",
        "import",
        "exec",
        "api",
        "trust",
        "emulator",
        "completion",
        "init",
    }
)


def _init(args: argparse.Namespace) -> int:
    """Run `loopauth init` (its module loads only for it: `--help` stays light)."""
    from .init_cmd import cmd_init

    return cmd_init(args)


class _Formatter(argparse.HelpFormatter):
    def __init__(self, prog: str, **kwargs: Any) -> None:
        # argparse asks shutil for the width, and shutil imports lzma, bz2 and zlib: not here.
        if kwargs.get("width") is None:
            kwargs["width"] = _columns() - 2
        super().__init__(prog, **kwargs)


def _columns() -> int:
    import os

    try:
        return max(int(os.environ.get("COLUMNS", "")), 20)
    except ValueError:
        pass
    try:
        return max(os.get_terminal_size(2).columns, 20)
    except (OSError, ValueError):
        return 80


class _RawFormatter(argparse.RawDescriptionHelpFormatter, _Formatter):
    """Keeps the description's lines (install instructions) as written."""


class _Parser(argparse.ArgumentParser):
    # Set on a command whose positionals may sit among its options (`api PROVIDER --shop S
    # PATH`): plain argparse gives both positionals away at the first word and then rejects
    # PATH, so such a command parses options first, then the positionals left over.
    intermixed = False
    _mixing = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        if not self.intermixed or self._mixing:
            return super().parse_known_args(*args, **kwargs)
        self._mixing = True  # parse_known_intermixed_args calls back here, twice
        try:
            return self.parse_known_intermixed_args(*args, **kwargs)
        finally:
            self._mixing = False

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}\n{self.format_usage().strip()}")


def _global_options(parser: argparse.ArgumentParser, *, command: bool) -> None:
    # Each command repeats these with SUPPRESS as its default, so `token --config F` works and
    # a value given before the command is not overwritten by the command's own default.
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS if command else None,
        help="providers.yaml to use "
        "(default: $LOOPAUTH_CONFIG, ./providers.yaml, the user config dir)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS if command else False,
        help="debug logging on stderr",
    )


def build_parser(plugin_commands: dict[str, Command] | None = None) -> argparse.ArgumentParser:
    """Return the argument parser for every command (plugins' from `plugin_commands`, or loaded).

    `plugin_commands` comes from the plugin snapshot when only their names and help are needed.
    """
    parser = _Parser(
        prog="loopauth",
        description="OAuth2 tokens through the system browser and a loopback listener.",
    )
    _global_options(parser, command=False)
    parser.add_argument("--version", action="version", version=f"loopauth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=description or help_text)
        _global_options(p, command=True)
        return p

    def command(
        name: str,
        help_text: str,
        fn: Callable[[argparse.Namespace], int],
        provider: bool = True,
        account: bool = True,
    ) -> argparse.ArgumentParser:
        p = add(name, help_text)
        if provider:
            completion.attach(
                p.add_argument(
                    "provider",
                    nargs="?",
                    metavar="PROVIDER",
                    help="provider name (default: `default:` or the only one)",
                ),
                completion.providers,
            )
        if account:
            completion.attach(
                p.add_argument("--account", metavar="NAME", help="account id or label"),
                completion.accounts,
            )
        p.set_defaults(func=fn)
        return p

    p = command(
        "providers",
        "list configured providers (or PROVIDER) and installed plugins",
        commands.cmd_providers,
        account=False,
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("login", "log in through the browser and store the token", commands.cmd_login)
    p.add_argument(
        "--no-browser", action="store_true", help="do not open a browser; print the URL on stderr"
    )
    p.add_argument(
        "--paste",
        action="store_true",
        help="also accept the address the browser ends on (or the code), pasted here: for "
        "logins from another machine (automatic when no browser opens and stdin is a terminal)",
    )
    p.add_argument(
        "--device",
        action="store_true",
        help="use the device authorization grant (RFC 8628): a code to enter on any device",
    )
    p.add_argument(
        "--scope",
        action="append",
        metavar="SCOPE",
        help="scopes to ask for this time instead of the configured ones (repeat, or quote "
        "several separated by spaces)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="how long to wait for the redirect (default: the provider's `timeout`)",
    )
    p.add_argument(
        "--output",
        metavar="FILE",
        help="also write the provider's raw token response here (- = stdout)",
    )

    output_help = "also write the provider's latest raw token response here (- = stdout)"
    p = command(
        "token",
        "print a valid access token (refreshing it first when needed)",
        commands.cmd_token,
    )
    p.add_argument("--json", action="store_true", help="print a JSON object instead")
    p.add_argument("--output", metavar="FILE", help=output_help)

    p = command(
        "refresh", "refresh the stored token now (--all: every account due)", commands.cmd_refresh
    )
    p.add_argument("--output", metavar="FILE", help=output_help)
    p.add_argument(
        "--all",
        action="store_true",
        help="refresh every account (of PROVIDER, or of all) that is due; report each",
    )
    p.add_argument("--force", action="store_true", help="with --all: refresh even fresh ones")
    p.add_argument(
        "--jobs",
        type=int,
        default=8,
        metavar="N",
        help="with --all: refreshes at once (default 8)",
    )
    p.add_argument("--json", action="store_true", help="with --all: a JSON summary on stdout")

    p = command(
        "status",
        "show stored accounts, expiry and scopes (never secrets)",
        commands.cmd_status,
        account=False,
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command(
        "logout",
        "revoke the token at the provider (where it can) and delete it",
        commands.cmd_logout,
    )
    p.add_argument("--local", action="store_true", help="only delete it here; do not revoke")
    p.add_argument("--force", action="store_true", help="delete it even when revocation fails")

    p = add(
        "switch",
        "make an account the provider's default (like gh auth switch)",
        description="Make ACCOUNT (an id or label) the account that commands and get_token use "
        "for PROVIDER when no --account is given.",
    )
    completion.attach(
        p.add_argument("provider", metavar="PROVIDER", help="provider name"), completion.providers
    )
    completion.attach(
        p.add_argument("account_name", metavar="ACCOUNT", help="account id or label"),
        completion.accounts,
    )
    p.set_defaults(func=commands.cmd_switch)

    p = add(
        "import",
        "store tokens from saved token responses (the Chilkat sample's file, RFC 6749 JSON)",
        description="Store the tokens in FILEs (- for standard input) that PROVIDER's type can "
        "parse: TikTok Shop's {code, message, data} answer as the Chilkat sample saves it, or a "
        "standard token response. Each file is reported; a bad one does not stop the rest.",
    )
    completion.attach(
        p.add_argument("provider", metavar="PROVIDER", help="provider name"), completion.providers
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="token response files, - = stdin")
    completion.attach(
        p.add_argument(
            "--account",
            metavar="NAME",
            help="account id for files that name none (default: `default`)",
        ),
        completion.accounts,
    )
    p.add_argument(
        "--replace",
        action="store_true",
        help="overwrite stored tokens even when the file's is not certainly newer",
    )
    p.set_defaults(func=commands.cmd_import)

    p = command(
        "exec",
        "run `-- COMMAND [ARGS...]` with a valid access token in its environment",
        commands.cmd_exec,
    )
    p.add_argument(
        "--env",
        default="ACCESS_TOKEN",
        metavar="NAME",
        help="the environment variable that holds the token (default: ACCESS_TOKEN)",
    )
    # `-- COMMAND [ARGS...]` is split off before parsing (cli._parse): argparse would give the
    # command's first word to PROVIDER.
    p.set_defaults(argv=[])
    p.usage = (
        "loopauth exec [-h] [--config FILE] [-v] [PROVIDER] [--account NAME] [--env NAME] "
        "-- COMMAND [ARGS...]"
    )

    p = add(
        "api",
        "call the provider's API with the stored token, like gh api (TikTok Shop: signed)",
        description=api_cmd.DESCRIPTION,
    )
    p.formatter_class = _RawFormatter
    p.intermixed = True  # type: ignore[attr-defined]
    completion.attach(
        p.add_argument(
            "provider",
            nargs="?",
            metavar="PROVIDER",
            help="provider name (default: `default:` or the only one); one name alone is PATH",
        ),
        completion.providers,
    )
    completion.attach(
        p.add_argument(
            "path",
            nargs="?",
            metavar="PATH",
            help="the path under api_base_url, starting with / (may carry a ?query)",
        ),
        api_cmd.no_completion,  # an API path, not a local file
    )
    completion.attach(
        p.add_argument("--account", metavar="NAME", help="account id or label"),
        completion.accounts,
    )
    api_cmd.configure(p)
    p.usage = api_cmd.USAGE
    p.set_defaults(func=api_cmd.cmd_api)

    p = add(
        "trust",
        "approve a providers.yaml in the current folder (like direnv allow)",
        description="Approve a providers.yaml found in the current folder: loopauth uses such a "
        "file only once you have approved its exact content. Files named with --config or "
        "$LOOPAUTH_CONFIG, and the one in your user config folder, need no approval.",
    )
    p.add_argument(
        "file",
        nargs="?",
        default="providers.yaml",
        metavar="FILE",
        help="default: ./providers.yaml",
    )
    p.add_argument("--revoke", action="store_true", help="withdraw the approval")
    p.set_defaults(func=commands.cmd_trust)

    p = add(
        "init",
        "add a commented providers.yaml entry for a provider type (asks for non-secrets)",
        description="Add a commented entry for a provider of type TYPE to the providers.yaml in "
        "use (or a new one in the user config folder). It asks for the settings the entry "
        "needs, offering defaults, and never for a secret: those are written as ${VAR} "
        "references to set in the environment. `loopauth providers` lists the types.",
    )
    p.add_argument("type", nargs="?", metavar="TYPE", help="provider type (the `plugin:` value)")
    p.add_argument("--name", help="the provider's name in providers.yaml (default: the type)")
    p.add_argument("--yes", "-y", action="store_true", help="ask nothing: take every default")
    p.add_argument(
        "--print", action="store_true", help="print the entry (with defaults), write nothing"
    )
    p.set_defaults(func=_init)

    p = add(
        "emulator",
        "run a local emulator of a provider's auth server",
        description="Run a local emulator of a provider's authorization server.",
    )
    p.add_argument("name", nargs="?", default="oauth2", help="emulator name (default: oauth2)")
    p.add_argument("--host", default="127.0.0.1", help="loopback address (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    p.add_argument("--access-token-lifetime", type=int, metavar="SECONDS")
    p.add_argument("--rotate-refresh-tokens", action="store_true")
    p.set_defaults(func=commands.cmd_emulator)

    p = sub.add_parser(
        "completion",
        help="print the shell code for TAB completion (bash, zsh, fish)",
        description=completion.INSTALL,
        formatter_class=_RawFormatter,
    )
    _global_options(p, command=True)
    p.add_argument("shell", choices=completion.SHELLS, metavar="SHELL", help="bash, zsh or fish")
    p.set_defaults(func=completion.cmd_completion)

    if plugin_commands is None:
        from .. import plugin_manager

        plugin_commands = plugin_manager.commands()
    for extra in plugin_commands.values():
        if extra.name in sub.choices:
            import logging

            logging.getLogger("loopauth").warning(
                "a plugin's command %r clashes with a built-in one; ignored", extra.name
            )
            continue
        p = command(extra.name, extra.help, extra.run)
        if extra.configure is not None:
            extra.configure(p)
    return parser
