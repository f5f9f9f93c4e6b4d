"""`loopauth init [TYPE]`: add a commented providers.yaml entry for a provider type.

It asks for what the entry needs (a client id, Microsoft's tenant...) and never for a secret:
secret settings are written as `${VAR}` references, to be set in the environment. The entry is
inserted into the providers.yaml in use (or a new one in the user config folder), and the
result must load before anything is written.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, UsageError

if TYPE_CHECKING:
    from ..config import Config
    from ..provider import ProviderType, Setting

HEADER = (
    "# loopauth providers: `loopauth login NAME`, `loopauth token NAME`.\n"
    "# Secrets come from environment variables (${VAR}); never write them here.\n"
    "# Reference: docs/configuration.md in the loopauth repository.\n"
)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def variable(provider: str, key: str) -> str:
    """Return the environment variable an entry reads a secret setting from."""
    return re.sub(r"[^A-Z0-9]+", "_", f"{provider}_{key}".upper()).strip("_")


def _reference(name: str, key: str, *, optional: bool = False) -> str:
    """Return the `${VAR}` (or, for a secret the provider can do without, `${VAR:-}`) written
    for a setting."""
    return f"${{{variable(name, key)}{':-' if optional else ''}}}"


def _scalar(value: Any) -> str:
    """Return `value` as YAML (quoted where YAML needs it), on one line."""
    import yaml

    # Block style for a scalar (a `${VAR}` stays unquoted), one flow list for a list.
    flow = None if isinstance(value, list | dict) else False
    text = yaml.safe_dump({"k": value}, default_flow_style=flow, width=1 << 16)
    return str(text.strip()[len("k: ") :])


def _answer_default(name: str, key: str, setting: Setting) -> Any:
    """Return what the entry holds for `key` unless the user says otherwise (None: nothing)."""
    if setting.secret:
        return _reference(name, key)
    if setting.default in (None, ""):
        # Required, with nothing to offer: a reference the user fills in the environment.
        return _reference(name, key) if setting.kind in ("str", "url") else None
    return None if setting.default in ([], {}) else setting.default


def render(ptype: ProviderType, name: str, values: dict[str, Any], indent: int = 2) -> str:
    """Return the commented entry for provider `name` of type `ptype`, indented for `providers:`."""
    pad, inner = " " * indent, " " * (indent * 2)
    settings = ptype.all_settings()
    lines = [
        f"{pad}# {line}".rstrip() for line in (ptype.init_help or ptype.description).split("\n")
    ]
    lines += [f"{pad}{name}:", f"{inner}plugin: {ptype.name}"]
    for key, value in values.items():
        setting = settings[key]
        if setting.help:
            note = setting.help
            if setting.secret:
                optional = isinstance(value, str) and value.endswith(":-}")
                note += "; from the environment" + (" (may stay unset)" if optional else "")
            lines.append(f"{inner}# {note}")
        lines.append(f"{inner}{key}: {_scalar(value)}")
    return "\n".join(lines) + "\n"


def _ask(question: str, default: Any) -> str | None:
    """Ask one question on stderr; return the answer, or None for the default (or at EOF)."""
    shown = " ".join(default) if isinstance(default, list) else str(default)
    print(f"{question} [{shown}]: ", end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    if not sys.stdin.isatty():  # piped answers are not echoed: end the prompt's line
        print(file=sys.stderr)
    if not line:  # EOF: a script that pipes nothing takes every default
        return None
    return line.strip() or None


def _values(ptype: ProviderType, name: str, ask: bool) -> dict[str, Any]:
    settings = ptype.all_settings()
    values: dict[str, Any] = {}
    for key in ptype.init_settings:
        setting = settings[key]
        value = _answer_default(name, key, setting)
        if ask and not setting.secret:  # secrets are never asked for: only named
            answer = _ask(f"{key} - {setting.help}" if setting.help else key, value or "")
            if answer is not None:
                value = answer.replace(",", " ").split() if setting.kind == "scope" else answer
        if value is not None:
            values[key] = value
    return values


def _optional_secrets(ptype: ProviderType, name: str, values: dict[str, Any]) -> dict[str, Any]:
    """Write a secret the provider can do without as `${VAR:-}`: unset, it is simply absent.

    (A GitHub provider without its secret still logs in with `--device`; a required secret's
    `${VAR}` makes the provider "not ready" until it is set.) Asked of the type's own checks.
    """
    from .. import config

    settings = ptype.all_settings()
    out = dict(values)
    for key, value in values.items():
        if not settings[key].secret or value != _reference(name, key):
            continue
        without = {k: v for k, v in out.items() if k != key}
        loaded = config.parse("providers:\n" + render(ptype, name, without), "init")
        if name not in loaded.errors or name in loaded.incomplete():
            out[key] = _reference(name, key, optional=True)
    return out


def _insert(text: str, name: str, ptype: ProviderType, values: dict[str, Any], path: str) -> str:
    """Return `text` with the entry added to its `providers:` mapping."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"is not valid YAML ({exc}); fix it first", file=path) from None
    if root is None:
        return (
            text
            + ("" if text.endswith("\n") or not text else "\n")
            + "providers:\n"
            + render(ptype, name, values)
        )
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError("is not a mapping of settings; fix it first", file=path)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    for key, node in root.value:
        if key.value != "providers":
            continue
        if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
            at = key.start_mark.line + 1  # `providers:` with nothing under it yet
            lines[at - 1] = f"{key.value}:\n"
            return "".join([*lines[:at], render(ptype, name, values), *lines[at:]])
        if not isinstance(node, yaml.MappingNode) or node.flow_style or not node.value:
            raise ConfigError(
                "its `providers:` is not written as an indented block; add this entry by hand:"
                f"\n{render(ptype, name, values)}",
                file=path,
            )
        if any(k.value == name for k, _ in node.value):
            raise UsageError(
                f"{path} already has a provider named {name!r}; pick another with --name"
            )
        indent = node.value[0][0].start_mark.column
        at = min(node.end_mark.line, len(lines))
        if node.end_mark.column:  # the mapping ends on its last line (no newline after)
            at = len(lines)
        return "".join([*lines[:at], render(ptype, name, values, indent), *lines[at:]])
    return "".join(lines) + "providers:\n" + render(ptype, name, values)


def _write_target(path: str) -> str:
    """Return the file to write: a symlinked providers.yaml (a dotfiles checkout) is written
    where it points, if that file is the user's own; a link to another's file is refused."""
    real = os.path.realpath(path)
    if real == path or not os.path.islink(path):
        return path
    if hasattr(os, "getuid") and os.stat(real).st_uid != os.getuid():
        raise UsageError(f"{path} links to {real}, which belongs to another user; not writing it")
    return real


def _check_others_unchanged(old: str, after: Config, name: str, path: str, block: str) -> None:
    """Refuse a result in which another provider came or went, or broke (an odd layout)."""
    from .. import config

    try:
        before = config.parse(old, path)
    except ConfigError:  # a new file, or one with no provider yet: nothing else to keep
        names, broken = set(), set()
    else:
        names, broken = set(before.names()), set(before.errors)
    if set(after.names()) != names | {name} or any(
        other not in broken and other in after.errors and other not in after.incomplete()
        for other in names
    ):
        raise ConfigError(
            f"adding the entry would change other providers (an unusual YAML layout); add it "
            f"by hand:\n{block}",
            file=path,
        )


def cmd_init(args: argparse.Namespace) -> int:
    """Add a provider entry to providers.yaml (or print it with --print)."""
    from .. import config, paths, plugin_manager, private, trust

    types = plugin_manager.provider_types()
    type_name = args.type
    if type_name is None:
        listing = "\n".join(f"  {t.name:12} {t.description}" for t in types.values())
        if args.yes or not sys.stdin.isatty():
            raise UsageError(f"name a provider type: loopauth init TYPE; installed:\n{listing}")
        print(f"provider types:\n{listing}", file=sys.stderr)
        type_name = _ask("provider type", "oauth2") or "oauth2"
    if type_name not in types:
        raise UsageError(
            f"no provider type named {type_name!r}; installed: {', '.join(sorted(types))}"
        )
    ptype = types[type_name]
    name = args.name or ptype.name.replace("_", "-")
    if not _NAME_RE.fullmatch(name):
        raise UsageError(f"--name {name!r}: use letters, digits, '-', '_' or '.'")
    if args.print:
        values = _optional_secrets(ptype, name, _values(ptype, name, ask=False))
        sys.stdout.write(render(ptype, name, values))
        return 0
    if args.config and os.path.isdir(args.config):
        raise UsageError(f"--config {args.config}: is a folder; name the providers.yaml file")
    found = paths.find_config(args.config)
    if found is not None:
        path, origin = found
        if origin != paths.CURRENT_FOLDER:  # approval is of the folder's file as it is
            path = _write_target(path)
        data = config.read_file(path)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ConfigError("is not UTF-8 text", file=path) from None
    else:  # a new file where loopauth will look: the one named, else the user config folder
        path, origin = paths.config_candidates(args.config)[0]
        if not (args.config or os.environ.get("LOOPAUTH_CONFIG")):
            path, origin = (
                os.path.join(paths.user_config_dir(), "providers.yaml"),
                paths.USER_CONFIG,
            )
        path, data, text = os.path.abspath(path), b"", HEADER
    # A new file is all loopauth's own; an approved one stays approved with this addition.
    was_trusted = origin == paths.CURRENT_FOLDER and (not data or trust.is_trusted(path, data))
    if origin == paths.CURRENT_FOLDER and not was_trusted:
        raise UsageError(
            f"{path} is in the current folder and not approved; check it and run "
            "`loopauth trust` first, or pass --config FILE"
        )
    newline = "\r\n" if "\r\n" in text else "\n"
    text = text.replace("\r\n", "\n")
    # Fails early (name taken, odd layout), before any question is asked.
    _insert(text, name, ptype, {k: "" for k in ptype.init_settings}, path)
    values = _optional_secrets(ptype, name, _values(ptype, name, ask=not args.yes))
    new = _insert(text, name, ptype, values, path)
    loaded = config.parse(new, path)
    if name in loaded.errors and name not in loaded.incomplete():
        raise loaded.errors[name]  # a bad answer: nothing was written
    _check_others_unchanged(text, loaded, name, path, render(ptype, name, values))
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        private.make_dirs(folder)
    bom = "\ufeff" if data.startswith(b"\xef\xbb\xbf") else ""  # kept as the file had it
    payload = (bom + new.replace("\n", newline)).encode("utf-8")
    private.write(path, payload)
    if was_trusted:  # the user approved the file; this entry is loopauth's own addition
        trust.approve(path, payload)
    print(f"Added provider {name} (plugin {ptype.name}) to {path}", file=sys.stderr)
    unset = list(loaded.incomplete().get(name, ()))
    if unset:
        print(f"Before logging in, set: {', '.join(unset)}", file=sys.stderr)
    print(f"Then: loopauth login {name}", file=sys.stderr)
    return 0
