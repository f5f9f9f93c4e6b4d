"""providers.yaml: find it, parse it with line numbers, substitute ${VAR}s, check settings."""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from . import paths
from .errors import ConfigError, IncompleteConfig
from .provider import Provider, ProviderType, Setting
from .urls import check_url
from .yamldoc import Doc, Loader

log = logging.getLogger("loopauth.config")

MAX_BYTES = paths.MAX_CONFIG_BYTES
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # always used with fullmatch
ENV_RE = re.compile(r"\$\$|\$\{([^}:]*)(?::-([^}]*))?\}")
TOP_KEYS = ("default", "providers")
WINDOWS_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(10)),
    *(f"lpt{i}" for i in range(10)),
}
TRUE = {"true", "yes", "on", "1"}
FALSE = {"false", "no", "off", "0"}


@dataclass
class Config:
    """A loaded providers.yaml: the default provider, good providers, and broken ones."""

    path: str
    default: str | None = None
    providers: dict[str, Provider] = field(default_factory=dict)
    errors: dict[str, ConfigError] = field(default_factory=dict)
    plugins: Mapping[str, ProviderType] = field(default_factory=dict)
    env_used: dict[str, str | None] = field(default_factory=dict)
    # Providers that only lack environment variables, built without those settings.
    partial: dict[str, Provider] = field(default_factory=dict)
    # (mtime_ns, size) of the file as it was read: a cache of this config is keyed on these,
    # not on a stat taken later, when the file may already hold something else.
    read_stamp: tuple[int, int] | None = None

    def names(self) -> list[str]:
        """Return every configured provider name, broken ones included."""
        return sorted({*self.providers, *self.errors})

    def select(self, name: str | None) -> Provider:
        """Return the named provider, else `default:`, else the only one configured."""
        if name is None:
            name = self.default
        if name is None:
            names = self.names()
            if len(names) != 1:
                raise ConfigError(
                    "several providers are configured and no `default:` is set; name one of: "
                    + ", ".join(names),
                    file=self.path,
                )
            name = names[0]
        if name in self.errors:
            raise self.errors[name]
        if name not in self.providers:
            hint = _did_you_mean(name, self.names())
            raise ConfigError(
                f"no provider named {name!r}{hint}; configured: "
                + (", ".join(self.names()) or "none"),
                file=self.path,
            )
        return self.providers[name]

    def select_local(self, name: str | None) -> Provider:
        """Like select(), but a provider that only lacks environment variables is returned
        too, without those settings: for commands that never send them (status, logout)."""
        try:
            return self.select(name)
        except IncompleteConfig as exc:
            if isinstance(exc.provider, Provider):
                return exc.provider
            raise

    def incomplete(self) -> dict[str, tuple[str, ...]]:
        """Return the providers that only lack environment variables, with those variables."""
        return {
            name: error.variables
            for name, error in self.errors.items()
            if isinstance(error, IncompleteConfig)
        }


def _did_you_mean(word: str, options: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _substitute(value: Any, used: dict[str, str | None]) -> Any:
    """Replace ${VAR} and ${VAR:-default} in strings; `$$` is a literal `$`."""
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            var, default = m.group(1), m.group(2)
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
                raise ValueError(f"bad variable name ${{{var}}}")
            current = os.environ.get(var)
            used[var] = current
            if current is None or (current == "" and default is not None):
                if default is None:
                    raise LookupError(var)
                return default
            return current

        return ENV_RE.sub(repl, value)
    if isinstance(value, list):
        return [_substitute(v, used) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, used) for k, v in value.items()}
    return value


def convert(
    kind: str, value: Any, setting: Setting, *, redirect: bool = False, shown: Any = None
) -> Any:
    """Convert one setting's value to its kind; raise ValueError with a message.

    `shown` is what a message may quote instead of the value (its ${VAR} text).
    """
    if value is None:
        return None
    if kind in ("str", "url"):
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError("must be a string")
        value = str(value)
        if setting.choices and value not in setting.choices:
            hint = _did_you_mean(value, setting.choices)
            raise ValueError(f"must be one of: {', '.join(setting.choices)}{hint}")
        if kind == "url":
            problem = check_url(value, redirect=redirect, detail=shown is None)
            if problem:
                raise ValueError(f"{value if shown is None else shown!r} {problem}")
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in TRUE | FALSE:
            return value.lower() in TRUE
        raise ValueError("must be true or false")
    if kind in ("int", "float"):
        if isinstance(value, bool):
            raise ValueError("must be a number")
        try:
            number = float(value) if kind == "float" else int(value)
        except (TypeError, ValueError):
            raise ValueError("must be a number") from None
        if not math.isfinite(number) or number < 0 or (setting.positive and number <= 0):
            raise ValueError("must be a finite number " + ("> 0" if setting.positive else ">= 0"))
        return number
    if kind in ("scope", "list"):
        if isinstance(value, str):
            return value.split() if kind == "scope" else [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ValueError("must be a string or a list of strings")
    if kind == "map":
        if not isinstance(value, dict):
            raise ValueError("must be a mapping of names to values")
        out = {}
        for k, v in value.items():
            if isinstance(v, dict | list) or v is None:
                raise ValueError(f"value of {k!r} must be a string or a number")
            out[k] = str(v).lower() if isinstance(v, bool) else str(v)
        return out
    if kind == "ports":
        return _ports(value, detail=shown is None)
    raise ValueError(f"unknown setting kind {kind}")


MAX_PORTS = 1000  # a range is tried port by port, and each is a redirect URL to register
PORT_FORMS = "a port (8400), a range (8400-8409) or a list of them"
PORT_WORD = re.compile(r"([0-9]{1,10})(?:-([0-9]{1,10}))?")  # always used with fullmatch


def _ports(value: Any, *, detail: bool = True) -> list[int]:
    """Expand `8400-8409`, `8400`, or a list of ports and ranges, into ports in order.

    `detail`: messages may quote the value (not when it came from a ${VAR}).
    """
    items = value if isinstance(value, list) else [value]
    words: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise ValueError(f"must be {PORT_FORMS}")
        # A string may hold several, as a ${VAR} would: "8400-8409, 8420".
        words.extend(re.sub(r"\s*-\s*", "-", str(item)).replace(",", " ").split())
    if not words:
        raise ValueError(f"must be {PORT_FORMS}")
    ports: list[int] = []
    seen: set[int] = set()
    for word in words:
        found = PORT_WORD.fullmatch(word)
        if not found:
            what = f"{word!r} is not" if detail else "holds something that is not"
            raise ValueError(f"{what} a port or a range; write {PORT_FORMS}")
        first = int(found.group(1))
        last = int(found.group(2) or first)
        for port in (first, last):
            if not 1 <= port <= 65535:
                what = f"port {port} is" if detail else "holds a port"
                raise ValueError(f"{what} not between 1 and 65535")
        if first > last:
            what = f"range {word} runs" if detail else "holds a range that runs"
            raise ValueError(f"{what} backwards (low-high, e.g. 8400-8409)")
        if last - first + 1 > MAX_PORTS:
            raise ValueError(f"names more than {MAX_PORTS} ports")
        for port in range(first, last + 1):
            if port not in seen:
                seen.add(port)
                ports.append(port)
        if len(ports) > MAX_PORTS:
            raise ValueError(f"names more than {MAX_PORTS} ports")
    return ports


def build_provider(
    name: str,
    raw: Mapping[str, tuple[yaml.Node | None, Any]],
    types: Mapping[str, ProviderType],
    doc: Doc,
    node: yaml.Node | None,
    used: dict[str, str | None],
) -> Provider:
    """Check one provider's settings and return it, or raise a ConfigError naming the line."""
    prefix = f"providers.{name}"
    if not NAME_RE.fullmatch(name):
        raise doc.error(node, prefix, "provider names use letters, digits, '.', '_' and '-' only")
    if name.split(".")[0].lower() in WINDOWS_RESERVED:  # the name becomes a directory
        raise doc.error(node, prefix, f"{name!r} is a reserved file name on Windows; pick another")
    plugin_node, plugin = raw.get("plugin", (node, "oauth2"))
    if not isinstance(plugin, str) or plugin not in types:
        hint = _did_you_mean(str(plugin), list(types))
        raise doc.error(
            plugin_node,
            f"{prefix}.plugin",
            f"unknown plugin {plugin!r}{hint}; installed: {', '.join(sorted(types))}",
        )
    ptype = types[plugin]
    schema = ptype.all_settings()
    settings: dict[str, Any] = {}
    secret_env: set[str] = set()
    # Every problem of this provider is reported at once, not one per run.
    problems: list[ConfigError] = []
    missing: dict[str, tuple[str, yaml.Node | None]] = {}  # setting -> (unset variable, node)
    for key, (knode, value) in raw.items():
        if key == "plugin":
            continue
        if key not in schema:
            problems.append(
                doc.error(
                    knode,
                    f"{prefix}.{key}",
                    f"unknown setting for plugin {plugin}{_did_you_mean(key, list(schema))}",
                )
            )
            continue
        setting = schema[key]
        here: dict[str, str | None] = {}
        try:
            substituted = _substitute(value, here)
        except LookupError as exc:
            used.update(here)  # setting it later must invalidate what was cached about this
            missing[key] = (str(exc.args[0]), knode)
            continue
        except ValueError as exc:
            problems.append(doc.error(knode, f"{prefix}.{key}", str(exc)))
            continue
        used.update(here)
        if setting.secret:
            secret_env.update(here)
        # An error shows the ${VAR} text as written, never the value it stood for.
        shown = value if here else None
        try:
            settings[key] = convert(
                setting.kind, substituted, setting, redirect=key == "redirect_uri", shown=shown
            )
        except ValueError as exc:
            message = f"has the wrong type ({exc})" if setting.secret else str(exc)
            problems.append(doc.error(knode, f"{prefix}.{key}", message))
    if missing:
        problems.append(_missing_error(name, missing, doc, node))
    if len(problems) > 1 or (problems and not missing):
        raise _combined(problems, doc.path)
    for key, setting in schema.items():
        if settings.get(key) is None and setting.default is not None and key not in missing:
            default = setting.default
            settings[key] = (
                list(default)
                if isinstance(default, list)
                else (dict(default) if isinstance(default, dict) else default)
            )
    if missing:
        # What does not hang on the missing values is still checked, so that setting them
        # does not merely uncover the next problem.
        later = _problem_besides(ptype, settings, missing, schema)
        if later is not None:
            key, _, message = later.partition(": ")
            knode = raw.get(key, (node, None))[0]
            problems.append(
                doc.error(knode, f"{prefix}.{key}" if message else prefix, message or later)
            )
        try:
            _check_port_range(prefix, raw, settings, doc, node)
        except ConfigError as exc:
            problems.append(exc)
        if len(problems) > 1:
            raise _combined(problems, doc.path)
        raise _incomplete(name, ptype, settings, secret_env, missing, problems[0], raw, doc, node)
    if ptype.derive is not None:
        ptype.derive(settings)
    if ptype.validate is not None:
        problem = ptype.validate(settings)
        if problem:
            key, _, message = problem.partition(": ")
            knode = raw.get(key, (node, None))[0]
            raise doc.error(knode, f"{prefix}.{key}" if message else prefix, message or problem)
    if settings.get("redirect_port_range") and not Provider(
        name, ptype, settings
    ).authorization_carries("redirect_uri"):
        raise doc.error(
            raw.get("redirect_port_range", (node, None))[0],
            f"{prefix}.redirect_port_range",
            f"plugin {plugin} sends the provider no redirect_uri (it redirects to the one URL "
            "registered for the app), so the port cannot change: use a fixed port in redirect_uri",
        )
    _check_port_range(prefix, raw, settings, doc, node)
    _check_store(name, raw, settings, doc, node)
    provider = Provider(name, ptype, settings)
    absent = [s for s in settings.get("required_scopes") or [] if s not in settings["scope"]]
    if absent and provider.authorization_carries("scope"):
        raise doc.error(
            raw.get("required_scopes", (node, None))[0],
            f"{prefix}.required_scopes",
            f"{', '.join(absent)} is not in `scope`: add it there too, or it is never asked for",
        )
    provider.secret_env = frozenset(secret_env)
    return provider


def _check_port_range(
    prefix: str,
    raw: Mapping[str, tuple[yaml.Node | None, Any]],
    settings: Mapping[str, Any],
    doc: Doc,
    node: yaml.Node | None,
) -> None:
    """`redirect_port_range` chooses the port: the redirect_uri must leave it open."""
    if not settings.get("redirect_port_range"):
        return
    uri = str(settings.get("redirect_uri") or "")
    try:
        parts = urlsplit(uri)
        fixed = parts.port  # None or 0: no port, the range picks one
    except ValueError:
        return  # redirect_uri's own check names that problem
    if fixed:
        host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
        bare = urlunsplit((parts.scheme, host or "", parts.path, parts.query, ""))
        knode = raw.get("redirect_port_range", (node, None))[0]
        raise doc.error(
            knode,
            f"{prefix}.redirect_port_range",
            f"needs a redirect_uri without a port, but redirect_uri has port {fixed}: write "
            f"redirect_uri: {bare} to pick a port from the range, or remove "
            f"redirect_port_range to keep port {fixed}",
        )


def _problem_besides(
    ptype: ProviderType,
    settings: Mapping[str, Any],
    missing: Mapping[str, object],
    schema: Mapping[str, Setting],
) -> str | None:
    """Return the type's validation problem that is not about a missing setting, or None.

    The missing settings stand in as distinct numeric strings (or a URL), which every string
    check accepts, so a problem found is about the settings that are there.
    """
    if ptype.validate is None:
        return None
    trial = dict(settings)
    for i, key in enumerate(missing):
        kind = schema[key].kind
        if kind == "url":
            trial[key] = f"https://unset-{i}.invalid/"
        elif kind == "str":
            trial[key] = str(1_000_001 + i)
    try:
        if ptype.derive is not None:
            ptype.derive(trial)
        problem = ptype.validate(trial)
    except Exception:  # a plugin's check that can't take the stand-ins: judged once they're set
        return None
    if problem is None or problem.partition(": ")[0] in missing:
        return None
    return problem


def _missing_error(
    name: str,
    missing: Mapping[str, tuple[str, yaml.Node | None]],
    doc: Doc,
    node: yaml.Node | None,
) -> ConfigError:
    """The one error naming every unset variable a provider's settings use."""
    if len(missing) == 1:
        [(key, (var, knode))] = missing.items()
        return doc.error(
            knode,
            f"providers.{name}.{key}",
            f"environment variable {var} is not set (needed by provider {name})",
        )
    listed = ", ".join(f"{var} ({key})" for key, (var, _) in missing.items())
    return doc.error(node, f"providers.{name}", f"environment variables {listed} are not set")


def _combined(problems: list[ConfigError], path: str) -> ConfigError:
    """One error for all of a file's (or a provider's) problems, each on its own line."""
    flat = [part for p in problems for part in p.parts or [p]]
    if len(flat) == 1:
        return flat[0]
    combined = ConfigError(
        f"{len(flat)} problems:\n" + "\n".join(f"  {p}" for p in flat),
        file=path,
        line=flat[0].line,
    )
    combined.parts = flat
    return combined


def _incomplete(
    name: str,
    ptype: ProviderType,
    settings: dict[str, Any],
    secret_env: set[str],
    missing: Mapping[str, tuple[str, yaml.Node | None]],
    error: ConfigError,
    raw: Mapping[str, tuple[yaml.Node | None, Any]],
    doc: Doc,
    node: yaml.Node | None,
) -> IncompleteConfig:
    """The error for a provider that only lacks variables, with the provider built without
    them (no validation: what it needs may be what is missing), for status and logout."""
    variables = tuple(var for var, _ in missing.values())
    partial: Provider | None = None
    if not {"store", "store_options"} & set(missing):
        try:
            if ptype.derive is not None:
                ptype.derive(settings)
            _check_store(name, raw, settings, doc, node)
        except (ConfigError, LookupError, ValueError, TypeError):
            partial = None
        else:
            partial = Provider(name, ptype, settings)
            partial.secret_env = frozenset(secret_env)
            partial.missing = {key: var for key, (var, _) in missing.items()}
    return IncompleteConfig(
        error.message,
        variables=variables,
        provider=partial,
        file=error.file,
        line=error.line,
        key=error.key,
    )


def _check_store(
    name: str,
    raw: Mapping[str, tuple[yaml.Node | None, Any]],
    settings: dict[str, Any],
    doc: Doc,
    node: yaml.Node | None,
) -> None:
    """Check `store:` names an installed store type and `store_options:` suit it (in place)."""
    from .stores import store_types, type_for

    prefix = f"providers.{name}"
    url = str(settings.get("store") or "file")
    snode = raw.get("store", (node, None))[0]
    types = store_types()
    stype = type_for(url, types)
    if stype is None:
        scheme, sep, _ = url.partition("://")
        # Never the whole value: a URL (or a mistyped one) can hold a password.
        if sep:
            what = repr(f"{scheme}://...")
        elif NAME_RE.fullmatch(url):
            what = repr(url)
        else:
            what = "(neither a store name nor a URL with ://)"
        schemes = sorted({s + "://" for t in types.values() for s in t.schemes})
        raise doc.error(
            snode,
            f"{prefix}.store",
            f"unknown store {what}"
            f"{_did_you_mean(url, list(types)) if what == repr(url) else ''}; "
            f"installed: {', '.join(sorted(types))}"
            + (f" (URLs: {', '.join(schemes)})" if schemes else ""),
        )
    options = {}
    onode = raw.get("store_options", (node, None))[0]
    for key, value in (settings.get("store_options") or {}).items():
        setting = stype.settings.get(key)
        if setting is None:
            hint = _did_you_mean(key, list(stype.settings))
            known = ", ".join(sorted(stype.settings)) or "none"
            raise doc.error(
                onode,
                f"{prefix}.store_options.{key}",
                f"unknown option for the {stype.name} store{hint}; it takes: {known}",
            )
        try:
            options[key] = convert(setting.kind, value, setting)
        except ValueError as exc:
            message = "has the wrong type" if setting.secret else str(exc)
            raise doc.error(onode, f"{prefix}.store_options.{key}", message) from None
    for key, setting in stype.settings.items():
        if key not in options and setting.default is not None:
            options[key] = setting.default
    if stype.validate is not None:
        problem = stype.validate(url, options)
        if problem:
            key, _, message = problem.partition(": ")
            if key.startswith("store_options.") and message:
                raise doc.error(onode, f"{prefix}.{key}", message)
            raise doc.error(snode, f"{prefix}.store", problem)
    settings["store"], settings["store_options"] = url, options


def load(explicit: str | None = None) -> Config:
    """Find and load providers.yaml (writing nothing); file-level problems raise, provider
    problems wait for use."""
    found = paths.find_config(explicit)
    if found is None:
        where = [c for c, _ in paths.config_candidates(explicit)]
        if explicit or os.environ.get("LOOPAUTH_CONFIG"):
            raise ConfigError(f"config file {where[0]} does not exist")
        raise ConfigError(
            "no providers.yaml found (looked for "
            + " and ".join(where)
            + "); pass --config FILE or set LOOPAUTH_CONFIG"
        )
    path, origin = found
    data, stamp = read_stamped(path)
    if origin == paths.CURRENT_FOLDER:
        require_trust(path, data)
    log.debug("using %s (from %s)", path, origin)
    config = parse_bytes(data, path)
    config.read_stamp = stamp
    return config


def parse_bytes(data: bytes, path: str) -> Config:
    """Parse a providers.yaml as read from disk (UTF-8, with or without a BOM)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError("is not UTF-8 text", file=path) from None
    return parse(text, path)


def read_file(path: str) -> bytes:
    """Read a providers.yaml, refusing one over the size cap before anything parses it."""
    return read_stamped(path)[0]


def read_stamped(path: str) -> tuple[bytes, tuple[int, int]]:
    """Read a providers.yaml; also return its (mtime_ns, size) from the descriptor read."""
    import stat

    try:
        # Non-blocking open, then a check on the same descriptor: a FIFO never hangs us.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError("is not a regular file", file=path)
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read ({exc.strerror})", file=path) from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"is larger than {MAX_BYTES // 1024} KiB; refused", file=path)
    return data, (st.st_mtime_ns, st.st_size)


def require_trust(path: str, data: bytes) -> None:
    """Refuse a current-folder providers.yaml the user has not approved (or that changed)."""
    from . import trust

    why = trust.file_problem(path)
    if why:
        raise ConfigError(
            f"{why}, so loopauth never uses it from the current folder; "
            "pass your own file with --config FILE",
            file=path,
        )
    state = trust.status(path, data)
    if state == "approved":
        return
    state = (
        "has changed since you approved it"
        if state == "changed"
        else "is in the current folder and has not been approved"
    )
    raise ConfigError(
        f"{state}: it decides where your tokens and secrets are sent. Read it, then run: "
        f"loopauth trust {shlex.quote(path)} (or pass your own file with --config FILE)",
        file=path,
    )


def parse(text: str, path: str = "providers.yaml") -> Config:
    """Parse providers.yaml text into a Config."""
    from .plugin_manager import provider_types

    types = provider_types()
    if len(text) > MAX_BYTES:
        raise ConfigError(f"is larger than {MAX_BYTES // 1024} KiB; refused", file=path)
    try:
        loader = Loader(text)  # checks for unprintable characters already
        loader.path = path
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"invalid YAML: {getattr(exc, 'reason', None) or exc.__class__.__name__}", file=path
        ) from None
    try:
        return _parse(loader, path, types)
    except RecursionError:
        raise ConfigError("is nested too deeply", file=path) from None
    finally:
        loader.dispose()


def _parse(loader: Loader, path: str, types: Mapping[str, ProviderType]) -> Config:
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(
            f"invalid YAML: {exc.problem or exc.context}",
            file=path,
            line=mark.line + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML ({exc.__class__.__name__})", file=path) from None
    doc = Doc(path, loader)
    config = Config(path=path, plugins=types)
    if root is None:
        raise ConfigError("is empty; it needs a `providers:` mapping", file=path)
    top = doc.mapping(root, "")
    # Every problem in the file is reported in one run: collected here, raised at the end.
    problems: list[ConfigError] = []
    for key, (knode, _) in top.items():
        if key not in TOP_KEYS:
            problems.append(
                doc.error(
                    knode,
                    key,
                    "unknown top-level key"
                    + _did_you_mean(key, TOP_KEYS)
                    + "; expected `default:` and `providers:`",
                )
            )
    if "providers" not in top:
        raise _combined([*problems, ConfigError("has no `providers:` mapping", file=path)], path)
    pnode = next(v for k, v in root.value if k.value == "providers")
    providers = doc.mapping(pnode, "providers") if top["providers"][1] is not None else {}
    if not providers:
        problems.append(doc.error(pnode, "providers", "no providers are configured"))
        raise _combined(problems, path)
    folded: dict[str, str] = {}
    for name, (knode, _) in providers.items():
        if name.casefold() in folded:  # names are directories: case-insensitive on Windows/macOS
            problems.append(
                doc.error(
                    knode,
                    f"providers.{name}",
                    f"differs from provider {folded[name.casefold()]!r} only in case",
                )
            )
        folded[name.casefold()] = name
    for name, (knode, _) in providers.items():
        vnode = next(v for k, v in pnode.value if k.value == name)
        used: dict[str, str | None] = {}
        try:
            raw = doc.mapping(vnode, f"providers.{name}")
            config.providers[name] = build_provider(name, raw, types, doc, knode, used)
        except IncompleteConfig as exc:  # usable by commands that never send the settings
            config.errors[name] = exc
            if isinstance(exc.provider, Provider):
                config.partial[name] = exc.provider
        except ConfigError as exc:
            config.errors[name] = exc
        config.env_used.update(used)  # every variable a setting read, set or not
    if "default" in top:
        dnode, default = top["default"]
        used = {}
        try:
            default = _substitute(default, used)
        except LookupError as exc:
            problems.append(
                doc.error(dnode, "default", f"environment variable {exc.args[0]} is not set")
            )
            default = None
        config.env_used.update(used)
        if default is not None and not isinstance(default, str):
            problems.append(doc.error(dnode, "default", "must be a provider name"))
        elif default and default not in config.names():
            problems.append(
                doc.error(
                    dnode,
                    "default",
                    f"names no configured provider{_did_you_mean(default, config.names())}",
                )
            )
        else:
            config.default = default or None
    if problems:
        broken = [e for e in config.errors.values() if not isinstance(e, IncompleteConfig)]
        raise _combined([*problems, *broken], path)
    return config
