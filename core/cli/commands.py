"""The built-in commands; each takes the parsed arguments and returns the exit code."""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import sys

from ..errors import UsageError
from .output import token_output, when, write_output

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the light commands (status, providers) more than their work
    from typing import Any


def _config(args: argparse.Namespace) -> Any:
    from ..config import load
    from .fastpath import write_cache

    if not args.verbose:  # a light command (status, providers) got here: it may warn now
        from . import _log_to_stderr

        _log_to_stderr(False)
    config = load(args.config)
    write_cache(config)  # so that the next `token` can skip all of this
    return config


def cmd_providers(args: argparse.Namespace) -> int:
    """List configured providers and installed plugins."""
    from .. import snapshot

    light, registry = _light(args), snapshot.read()
    if light is not None and registry is not None:  # both cached: no YAML, no plugins
        names, errors, cache = light
        providers, incomplete = cache["providers"], cache.get("incomplete") or {}
        default = cache.get("default")
        rows = [
            {
                "name": name,
                "plugin": (providers.get(name) or incomplete.get(name) or {}).get("plugin"),
                "default": name == default,
                "error": None if name in incomplete else errors.get(name),
                "missing": incomplete[name]["variables"] if name in incomplete else None,
                "lacks": (providers.get(name) or incomplete.get(name) or {}).get("lacks") or [],
            }
            for name in names
        ]
        return _print_providers(
            args,
            str(cache.get("path")),
            rows,
            list(registry["plugins"]),  # type: ignore[call-overload]
            dict(registry["provider_types"]),  # type: ignore[call-overload]
            dict(registry["failures"]),  # type: ignore[call-overload]
        )
    from .. import paths, plugin_manager

    if (
        args.provider is None
        and paths.find_config(args.config) is None
        and not (args.config or os.environ.get("LOOPAUTH_CONFIG"))
    ):  # a first run: say what can be configured, and how
        where = " and ".join(c for c, _ in paths.config_candidates(None))
        config_path, rows = None, []
    else:
        config = _config(args)
        config_path, rows = config.path, _provider_rows(config)
    plugins = [
        {"name": p.name, "distribution": p.distribution, "version": p.version, "builtin": p.builtin}
        for p in plugin_manager.plugins()
    ]
    snapshot.write()
    types = {name: t.description for name, t in sorted(plugin_manager.provider_types().items())}
    if config_path is None and not args.json:
        print(f"no providers.yaml yet (looked for {where}); add one with: loopauth init TYPE")
    return _print_providers(args, config_path, rows, plugins, types, plugin_manager.failures())


def _provider_rows(config: Any) -> list[dict[str, Any]]:
    """Return one row per configured provider: plugin, default, error, unset variables, lacks."""
    incomplete = config.incomplete()
    rows = []
    for name in config.names():
        provider = config.providers.get(name) or config.partial.get(name)
        error = config.errors.get(name)
        rows.append(
            {
                "name": name,
                "plugin": provider.plugin if provider else None,
                "default": name == config.default,
                "error": str(error) if error and name not in incomplete else None,
                "missing": list(incomplete[name]) if name in incomplete else None,
                "lacks": provider.lacks() if provider else [],
            }
        )
    return rows


def _print_providers(
    args: argparse.Namespace,
    path: str | None,
    rows: list[dict[str, Any]],
    plugins: list[dict[str, Any]],
    types: dict[str, str],
    failures: dict[str, str],
) -> int:
    if args.provider is not None:  # one provider: only its own problems count
        chosen = [row for row in rows if row["name"] == args.provider]
        if not chosen:
            from ..errors import ConfigError

            names = ", ".join(row["name"] for row in rows) or "none"
            raise ConfigError(
                f"no provider named {args.provider!r}; configured: {names}", file=path
            )
        rows = chosen
    if args.json:
        print(
            json.dumps(
                {
                    "config": path,
                    "providers": rows,
                    "plugins": plugins,
                    "provider_types": types,
                    "plugin_failures": failures,
                },
                indent=2,
            )
        )
    else:
        if path is not None:
            print(f"providers in {path}:")
        for row in rows:
            mark = " (default)" if row["default"] else ""
            if row["error"]:
                print(f"  {row['name']}{mark}: ERROR {row['error']}")
            elif row["missing"]:
                print(
                    f"  {row['name']}{mark}: plugin {row['plugin']}; not ready: set "
                    + ", ".join(row["missing"])
                )
            else:
                print(f"  {row['name']}{mark}: plugin {row['plugin']}")
            for line in row["lacks"] if not row["error"] else ():
                print(f"    lacks: {line}")
        print("provider types (`plugin:`; `loopauth init TYPE` writes an entry):")
        width = max((len(name) for name in types), default=0)
        for name, description in types.items():
            print(f"  {name:{width}}  {description}".rstrip())
        print("installed plugins:")
        for p in plugins:
            origin = "built-in" if p["builtin"] else f"{p['distribution']} {p['version']}"
            print(f"  {p['name']} ({origin})")
        for name, why in failures.items():
            print(f"  plugin {name} failed to load: {why}")
    return 2 if any(r["error"] for r in rows) else 0


def cmd_login(args: argparse.Namespace) -> int:
    """Log in through the browser and store the token."""
    from ..flow import Flow

    provider = _config(args).select(args.provider)
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError("--timeout must be a positive, finite number of seconds")
    if args.scope is not None:
        scopes = [s for words in args.scope for s in words.split()]
        if not scopes:
            raise UsageError("--scope needs at least one scope")
        if not provider.authorization_carries("scope"):
            raise UsageError(
                f"{provider.name} (plugin {provider.plugin}) sends no scopes when logging in: "
                "they are fixed on the app at the provider; --scope does not apply"
            )
        provider.settings["scope"] = scopes  # this login only: the config object is ours
        if provider.type.derive is not None:  # what the type adds to any scope (offline_access)
            provider.type.derive(provider.settings)
    if args.device:
        if args.paste or args.no_browser:
            raise UsageError("--device opens no browser and takes no pasted address")
        from .device_login import login_device

        return login_device(args, provider)
    timeout = args.timeout if args.timeout is not None else provider.timeout
    flow = Flow(provider, account=args.account)
    err = sys.stderr
    tty = err.isatty()
    raw = getattr(err, "raw", err)  # our own control sequences, past SafeStream

    def announce(url: str, opened: bool) -> None:
        if opened:
            print(
                f"Opened your browser to log in to {provider.name}. If it did not open, "
                "visit this URL:",
                file=err,
            )
        else:
            print(f"Open this URL in a browser to log in to {provider.name}:", file=err)
        print(url, file=err, flush=True)  # alone on its line, for people and scripts alike
        if not tty or flow.pasting:
            print(
                f"Waiting up to {timeout:g} s for the redirect to {flow.redirect_uri}",
                file=err,
                flush=True,
            )

    def tick(left: float) -> None:
        mins, secs = divmod(int(left + 0.999), 60)
        raw.write(
            f"\r\x1b[2KWaiting for the redirect to {flow.redirect_uri}: "
            f"{mins}:{secs:02d} left (Ctrl+C to cancel)"
        )
        raw.flush()

    try:
        token = flow.run(
            timeout,
            open_browser=not args.no_browser,
            on_url=announce,
            on_tick=tick if tty else None,
            paste=True if args.paste else None,
        )
    finally:
        if tty:
            raw.write("\r\x1b[2K")
            raw.flush()
    return logged_in(provider.name, token, flow.saved_to, args.output)


def logged_in(name: str, token: Any, saved_to: str | None, output: str | None) -> int:
    """Say who a login (browser or device) logged in as; write `--output`; return 0."""
    err = sys.stderr
    who = token.account_label or token.account
    extra = f" ({token.account_id})" if token.account_label and token.account_id else ""
    print(f"Logged in to {name} as {who}{extra}; token saved to {saved_to}", file=err)
    if output:
        write_output(output, token.raw)
        if output != "-":
            print(f"Token response written to {output}", file=err)
    return 0


def _store_of(provider: Any) -> Any:
    from ..stores import open_store

    return open_store(provider)


def cmd_token(args: argparse.Namespace) -> int:
    """Print a valid access token, refreshing it first when needed."""
    from ..api import ensure_fresh

    provider = _config(args).select(args.provider)
    token = ensure_fresh(provider, args.account, _store_of(provider))
    if args.output:
        write_output(args.output, token.raw)
    if args.output != "-":
        print(token_output(token, args.json))
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    """Refresh the stored token now (or, with --all, every account that is due)."""
    from ..api import ensure_fresh

    config = _config(args)
    if args.all:
        if args.account or args.output:
            raise UsageError("refresh --all takes no --account or --output")
        from .refresh_all import refresh_all

        return refresh_all(
            config, args.provider, force=args.force, jobs=args.jobs, as_json=args.json
        )
    if args.force or args.json:
        raise UsageError("--force and --json go with refresh --all")
    provider = config.select(args.provider)
    token = ensure_fresh(provider, args.account, _store_of(provider), force=True)
    if args.output:
        write_output(args.output, token.raw)
    if token.lasts:
        print(
            f"{provider.name} ({token.account_label or token.account}): the token does not "
            "expire and came without a refresh token; nothing to refresh",
            file=sys.stderr,
        )
        return 0
    print(
        f"Refreshed {provider.name} ({token.account_label or token.account}); access token "
        f"expires {when(token.expires_at)}",
        file=sys.stderr,
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Show stored accounts as a table, streaming; broken providers and damaged tokens exit 2/6."""
    from .status import show_status

    light = _light(args)
    if light is not None:  # answered from the cache: no YAML, no plugins
        from ..store import TokenStore

        names, errors, cache = light
        if args.provider is None or args.provider in names:
            selected = [args.provider] if args.provider else names
            store = TokenStore()
            incomplete = cache.get("incomplete") or {}
            missing = {n: list(v["variables"]) for n, v in incomplete.items()}
            return show_status(
                selected,
                {n: e for n, e in errors.items() if n not in missing},
                lambda name: store,
                as_json=args.json,
                missing=missing,
            )
    config = _config(args)
    names = [config.select_local(args.provider).name] if args.provider else config.names()
    incomplete = config.incomplete()
    readable = {**config.partial, **config.providers}
    return show_status(
        names,
        {name: str(error) for name, error in config.errors.items() if name not in incomplete},
        lambda name: _store_of(readable[name]) if name in readable else None,
        as_json=args.json,
        missing={name: list(v) for name, v in incomplete.items()},
    )


def _light(args: argparse.Namespace) -> tuple[list[str], dict[str, str], dict[str, Any]] | None:
    """Return (provider names, broken ones' errors, cache) when every provider uses the file
    store and the cached settings still hold; None sends the command to the full loader."""
    from .fastpath import settings

    if args.verbose:  # -v wants to see which providers.yaml is loaded, and how
        return None
    cache = settings(args.config)
    if cache is None:
        return None
    providers, errors = cache.get("providers"), cache.get("errors")
    if not isinstance(providers, dict) or not isinstance(errors, dict):
        return None
    incomplete = cache.get("incomplete") or {}
    if not isinstance(incomplete, dict):
        return None
    stores = [*providers.values(), *incomplete.values()]
    if not all(isinstance(p, dict) and p.get("file_store") is True for p in stores):
        return None
    return sorted({*providers, *errors}), {str(k): str(v) for k, v in errors.items()}, cache


def cmd_switch(args: argparse.Namespace) -> int:
    """Make an account the provider's default (like `gh auth switch`)."""
    provider = _config(args).select_local(args.provider)  # sends nothing: no secrets needed
    store = _store_of(provider)
    account_id = store.switch(provider.name, args.account_name)
    token = store.read(provider.name, account_id)
    label = f"{token.account_label} ({account_id})" if token.account_label else account_id
    print(f"{provider.name}: the default account is now {label}", file=sys.stderr)
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    """Revoke the token at the provider (RFC 7009) where it can, then delete it."""
    from ..errors import LoopauthError, StoreError, StoreWriteError

    provider = _config(args).select_local(args.provider)  # secrets are only for revocation
    store = _store_of(provider)
    account_id = store.resolve(provider.name, args.account)
    unset, revocable = _unset_for_revocation(provider)
    if unset and not (args.local or args.force):
        from ..errors import IncompleteConfig

        raise IncompleteConfig(
            f"{provider.name}: revoking the token needs {', '.join(unset)}, which is not set; "
            f"set it, or only delete the token here with: loopauth logout {provider.name} "
            f"--account {account_id} --local",
            variables=tuple(unset),
        )
    try:
        token = store.read(provider.name, account_id)
    except StoreWriteError:  # the store itself is unusable: nothing can be removed either
        raise
    except StoreError as exc:  # damaged: nothing to revoke with, but it can still go
        print(f"loopauth: {exc}", file=sys.stderr)
        token = None
    name = f"{provider.name} ({(token.account_label if token else None) or account_id})"
    if token is None:
        done = "removed the damaged token; nothing could be revoked"
    elif args.local:
        done = "removed the token locally (--local: not revoked at the provider)"
    elif unset:
        done = f"removed the token locally only ({', '.join(unset)} not set: not revoked)"
    elif not revocable:  # settings missing, none of them needed: nothing would be sent
        done = _no_revocation(provider)
    else:
        from ..revocation import revoke

        try:
            revoked = revoke(provider, token)
        except LoopauthError as exc:
            if not args.force:
                print(
                    f"loopauth: could not revoke the token: {exc}\nloopauth: the token is still "
                    f"stored; retry, or remove it anyway with: loopauth logout {provider.name} "
                    f"--account {account_id} --force (or --local)",
                    file=sys.stderr,
                )
                return exc.exit_code
            print(f"loopauth: could not revoke the token: {exc}", file=sys.stderr)
            revoked = None
        if revoked:
            done = "revoked the token at the provider and removed it"
        elif revoked is None:
            done = "removed the token locally only (--force: revocation failed)"
        else:
            done = _no_revocation(provider)
    store.remove(provider.name, account_id)
    print(f"Logged out of {name}: {done}", file=sys.stderr)
    return 0


def _no_revocation(provider: Any) -> str:
    """Say that the token was only forgotten here, and what the provider type says about it."""
    note = provider.type.logout_note
    why = note or f"{provider.name} offers no revocation endpoint"
    return f"removed the token locally only ({why})"


def _unset_for_revocation(provider: Any) -> tuple[list[str], bool]:
    """Return (the unset variables a revocation would need, whether it could revoke at all).

    Only for a provider that lacks variables; a complete one is (nothing unset, True).
    """
    missing: dict[str, str] = provider.missing
    if not missing:
        return [], True
    revocable = any(
        provider.get(key) or key in missing for key in ("revocation_endpoint", "issuer")
    )
    if not revocable:  # e.g. TikTok Shop: nothing is sent, so nothing is needed
        return [], False
    return sorted(set(missing.values())), True


def cmd_import(args: argparse.Namespace) -> int:
    """Store tokens from files the provider's type can parse (the Chilkat sample's, RFC 6749)."""
    from .importer import import_files

    provider = _config(args).select(args.provider)
    return import_files(
        provider, _store_of(provider), args.files, account=args.account, replace=args.replace
    )


def cmd_exec(args: argparse.Namespace) -> int:
    """Refresh if needed, then become COMMAND with the token in its environment."""
    import re

    from ..api import ensure_fresh

    argv = list(args.argv)
    if not argv:
        raise UsageError("exec needs a command: loopauth exec [PROVIDER] -- COMMAND [ARGS...]")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", args.env):
        raise UsageError(f"--env {args.env!r} is not an environment variable name")
    provider = _config(args).select(args.provider)
    token = ensure_fresh(provider, args.account, _store_of(provider))
    env = {**os.environ, args.env: token.access_token}
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        # Become the command: signals reach it directly and its exit code is ours.
        try:
            os.execvpe(argv[0], argv, env)  # noqa: S606 - the user's own command, by design
        except OSError as exc:
            print(f"loopauth: cannot run {argv[0]!r}: {exc.strerror or exc}", file=sys.stderr)
            return 127 if isinstance(exc, FileNotFoundError) else 126
    import subprocess

    # Windows has no exec: run it, and let Ctrl+C (which the console sends it too) end it.
    try:
        child = subprocess.Popen(argv, env=env)  # the user's own command
    except OSError as exc:
        print(f"loopauth: cannot run {argv[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            continue


def cmd_trust(args: argparse.Namespace) -> int:
    """Approve (or, with --revoke, stop approving) a providers.yaml in the current folder."""
    from .. import trust
    from ..config import parse_bytes, read_file
    from ..urls import host_of

    if args.config:  # every command takes --config; here it would not say which file to approve
        raise UsageError("trust approves FILE (default ./providers.yaml); --config does not apply")
    path = os.path.abspath(args.file)
    if args.revoke:
        done = trust.revoke(path)
        print(f"{path}: " + ("approval withdrawn" if done else "was not approved"), file=sys.stderr)
        return 0
    if not os.path.lexists(path):
        raise UsageError(f"{path} does not exist")
    why = trust.file_problem(path)
    if why:
        raise UsageError(f"{path} {why}; loopauth never approves such a file")
    data = read_file(path)
    config = parse_bytes(data, path)  # a broken file is refused before it is approved
    digest = trust.approve(path, data)
    print(f"Approved {path} (sha256 {digest[:16]}). Its providers send to:", file=sys.stderr)
    for name in config.names():
        provider = config.providers.get(name)
        if provider is None:
            print(f"  {name}: (not usable yet: {config.errors[name].message})", file=sys.stderr)
            continue
        hosts = sorted(
            {
                host_of(str(value))
                for key, setting in provider.type.all_settings().items()
                if setting.kind == "url"
                and key != "redirect_uri"
                and (value := provider.settings.get(key))
            }
        )
        print(f"  {name}: {', '.join(hosts) or '(no endpoints)'}", file=sys.stderr)
    return 0


def cmd_emulator(args: argparse.Namespace) -> int:
    """Run a local emulator until Ctrl+C."""
    from .. import plugin_manager
    from ..emulator import run
    from ..urls import is_loopback_host

    factories = plugin_manager.emulators()
    if args.name not in factories:
        raise UsageError(
            f"no emulator named {args.name!r}; installed: " + ", ".join(sorted(factories))
        )
    if not is_loopback_host(args.host):
        raise UsageError("the emulator only listens on loopback addresses")
    options: dict[str, Any] = {}
    if args.access_token_lifetime is not None:
        options["access_token_lifetime"] = args.access_token_lifetime
    if args.rotate_refresh_tokens:
        options["rotate_refresh_tokens"] = True
    try:
        emulator = factories[args.name](host=args.host, port=args.port, **options)
        emulator.start()  # binds here, so a busy port is this clear error
    except OSError as exc:
        busy = " (another program is listening there; pick another --port)" * (
            exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1))
        )
        raise UsageError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}{busy}"
        ) from None
    run(emulator)
    return 0
