"""Shell completion: `loopauth completion bash|zsh|fish` prints the script; TAB runs us again.

The script runs `loopauth` with `_ARGCOMPLETE` set; `cli.main` sees it before the fast path and
calls `complete`, which lets argcomplete answer from the same parser normal runs use. Provider
names come from the settings cache when it is fresh (no YAML), account names from the provider's
store. Importing this module is cheap: the parser imports it to attach the completers.
"""

from __future__ import annotations

import argparse
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ..config import Config

    Completer = Callable[..., "list[str] | dict[str, str]"]

SHELLS = ("bash", "zsh", "fish")

INSTALL = """\
Print the shell code that makes TAB complete loopauth's commands and options, provider names
(from providers.yaml) and account ids and labels (from the token store). Load it at start-up:

  bash, in ~/.bashrc:
      eval "$(loopauth completion bash)"
  zsh, in ~/.zshrc (after `autoload -U compinit && compinit`):
      eval "$(loopauth completion zsh)"
  fish, once:
      loopauth completion fish > ~/.config/fish/completions/loopauth.fish
"""


def cmd_completion(args: argparse.Namespace) -> int:
    """Print the completion script for `args.shell`."""
    from argcomplete.shell_integration import shellcode

    sys.stdout.write(shellcode(["loopauth"], shell=args.shell))
    return 0


def attach(action: argparse.Action, completer: Completer) -> argparse.Action:
    """Give an argument its completer (argcomplete looks for a `completer` attribute)."""
    action.completer = completer  # type: ignore[attr-defined]
    return action


class _Done(Exception):
    """argcomplete's exit, turned into a return value so that main() ends as usual."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _exit(code: int) -> None:
    raise _Done(code)


def complete() -> int:
    """Answer the shell's completion request (`_ARGCOMPLETE` is set) and return the exit code."""
    try:
        import argcomplete

        # Options only once a `-` is typed: `login <TAB>` lists the providers, not 12 options.
        argcomplete.autocomplete(_parser(), always_complete_options=False, exit_method=_exit)
    except _Done as done:
        return done.code
    except Exception:  # a traceback would land in the user's command line: no completions
        return 1
    return 1  # autocomplete returns only when _ARGCOMPLETE is unset


def _parser() -> argparse.ArgumentParser:
    """Build the parser as `cli._parse` would for the command on the line being completed."""
    from argcomplete.lexers import split_line

    from .. import snapshot
    from . import _command_of, _snapshot_commands
    from .parser import BUILTIN, build_parser

    line = os.environ.get("COMP_LINE", "")
    point = int(os.environ.get("COMP_POINT", len(line)))
    words = split_line(line, point)[3]  # the finished words before the cursor's
    plugin_commands = None
    # A plugin's command needs its plugin loaded for its own options; the others (and the list
    # of commands) only need the plugins' command names, which the snapshot has.
    if _command_of(words[1:]) in BUILTIN | {None}:
        plugin_commands = _snapshot_commands()
    parser = build_parser(plugin_commands)
    if plugin_commands is None:
        snapshot.write()  # plugins are loaded now: the next TAB need not
    return parser


# -- completers: argcomplete calls them with prefix, action, parser and parsed_args ------------


def providers(parsed_args: argparse.Namespace, **kwargs: object) -> list[str]:
    """Complete a provider name from providers.yaml (the one `--config` names, if given)."""
    try:
        return [n for n in _provider_names(_config_arg(parsed_args)) if _shown(n)]
    except Exception:  # a broken providers.yaml: the command itself will say what is wrong
        return []


def accounts(parsed_args: argparse.Namespace, **kwargs: object) -> dict[str, str]:
    """Complete an account id or label of the provider on the line (or the default one)."""
    try:
        name = getattr(parsed_args, "provider", None)
        index = _accounts(_config_arg(parsed_args), name if isinstance(name, str) else None)
    except Exception:  # no store, no such provider, the store unreachable: nothing to offer
        return {}
    found: dict[str, str] = {}
    for account_id, label in sorted(index.items()):
        if _shown(account_id):
            found[account_id] = label if label and _shown(label) else ""
    for account_id, label in sorted(index.items()):
        if label and label not in found and _shown(label):
            found[label] = f"label of {account_id}" if _shown(account_id) else "label"
    return found


def _shown(text: str) -> bool:
    """Whether `text` may be offered to the shell: provider text may hold control characters."""
    from ..terminal import UNSAFE

    # Tab and newline separate completions in fish's protocol; the others could drive the terminal.
    return bool(text) and not UNSAFE.search(text) and "\t" not in text and "\n" not in text


def _config_arg(parsed_args: argparse.Namespace) -> str | None:
    value = getattr(parsed_args, "config", None)
    # The shell expands ~ when the command runs, but the line argcomplete reads is unexpanded.
    return os.path.expanduser(value) if isinstance(value, str) else None


def _provider_names(config_arg: str | None) -> list[str]:
    from .fastpath import settings

    cache = settings(config_arg)
    providers = cache.get("providers") if cache else None
    if cache is not None and isinstance(providers, dict):
        broken = cache.get("broken")
        return sorted({*providers, *(broken if isinstance(broken, list) else [])})
    return _load(config_arg).names()


def _accounts(config_arg: str | None, name: str | None) -> dict[str, str | None]:
    from .fastpath import settings

    cache = settings(config_arg)
    providers = cache.get("providers") if cache else None
    if cache is not None and isinstance(providers, dict):
        if name is None:  # as `loopauth token` picks it
            default = cache.get("default")
            if isinstance(default, str):
                name = default
            elif len(providers) == 1 and not cache.get("broken"):
                name = next(iter(providers))
        entry = providers.get(name)
        if name is not None and isinstance(entry, dict) and entry.get("file_store") is True:
            from ..store import TokenStore

            return TokenStore().accounts(name)  # no YAML, no plugins
    provider = _load(config_arg).select_local(name)  # reading accounts needs no secrets
    from ..stores import open_store

    return open_store(provider).accounts(provider.name)


def _load(config_arg: str | None) -> Config:
    from ..config import load
    from .fastpath import write_cache

    config = load(config_arg)
    write_cache(config)  # so that the next TAB (and `token`) can skip YAML
    return config
