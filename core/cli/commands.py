"""The built-in commands; each takes the parsed arguments and returns the exit code."""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import sys
from typing import Any

from ..errors import UsageError
from ..token import Token
from .output import token_output, when, write_output


def _config(args: argparse.Namespace) -> Any:
    from ..config import load
    from .fastpath import write_cache

    config = load(args.config)
    write_cache(config)  # so that the next `token` can skip all of this
    return config


def _store() -> Any:
    from ..store import TokenStore

    return TokenStore()


def cmd_providers(args: argparse.Namespace) -> int:
    """List configured providers and installed plugins."""
    from .. import plugin_manager

    config = _config(args)
    types = config.plugins
    rows = []
    for name in config.names():
        provider = config.providers.get(name)
        error = config.errors.get(name)
        rows.append(
            {
                "name": name,
                "plugin": provider.plugin if provider else None,
                "default": name == config.default,
                "error": str(error) if error else None,
            }
        )
    plugins = [
        {"name": p.name, "distribution": p.distribution, "version": p.version, "builtin": p.builtin}
        for p in plugin_manager.plugins()
    ]
    failures = plugin_manager.failures()
    if args.json:
        print(
            json.dumps(
                {
                    "config": config.path,
                    "providers": rows,
                    "plugins": plugins,
                    "provider_types": sorted(types),
                    "plugin_failures": failures,
                },
                indent=2,
            )
        )
    else:
        print(f"providers in {config.path}:")
        for row in rows:
            mark = " (default)" if row["default"] else ""
            if row["error"]:
                print(f"  {row['name']}{mark}: ERROR {row['error']}")
            else:
                print(f"  {row['name']}{mark}: plugin {row['plugin']}")
        print("installed plugins:")
        for p in plugins:
            origin = "built-in" if p["builtin"] else f"{p['distribution']} {p['version']}"
            print(f"  {p['name']} ({origin})")
        print("provider types: " + ", ".join(sorted(types)))
        for name, why in failures.items():
            print(f"  plugin {name} failed to load: {why}")
    return 2 if any(r["error"] for r in rows) else 0


def cmd_login(args: argparse.Namespace) -> int:
    """Log in through the browser and store the token."""
    from ..flow import Flow

    provider = _config(args).select(args.provider)
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError("--timeout must be a positive, finite number of seconds")
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
        if not tty:
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
        )
    finally:
        if tty:
            raw.write("\r\x1b[2K")
            raw.flush()
    who = token.account_label or token.account
    extra = f" ({token.account_id})" if token.account_label and token.account_id else ""
    print(f"Logged in to {provider.name} as {who}{extra}; token saved to {flow.saved_to}", file=err)
    if args.output:
        write_output(args.output, token.raw)
        if args.output != "-":
            print(f"Token response written to {args.output}", file=err)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Print a valid access token, refreshing it first when needed."""
    from ..api import ensure_fresh

    provider = _config(args).select(args.provider)
    token = ensure_fresh(provider, args.account, _store())
    if args.output:
        write_output(args.output, token.raw)
    if args.output != "-":
        print(token_output(token, args.json))
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    """Refresh the stored token now."""
    from ..api import ensure_fresh

    provider = _config(args).select(args.provider)
    token = ensure_fresh(provider, args.account, _store(), force=True)
    if args.output:
        write_output(args.output, token.raw)
    print(
        f"Refreshed {provider.name} ({token.account_label or token.account}); access token "
        f"expires {when(token.expires_at)}",
        file=sys.stderr,
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Show stored accounts, expiry and scopes; a broken provider is reported and exits 2."""
    config = _config(args)
    names = [config.select(args.provider).name] if args.provider else config.names()
    store = _store()
    tokens: list[Token] = [t for name in names for t in store.list(name)]
    broken = {name: config.errors[name] for name in names if name in config.errors}
    for error in broken.values():
        print(f"loopauth: {error}", file=sys.stderr)
    if args.json:
        out = []
        for t in tokens:
            row = t.public_dict()
            row["expired"] = not t.is_fresh(0)
            out.append(row)
        print(json.dumps(out, indent=2))
        return 2 if broken else 0
    for name in names:
        mine = [t for t in tokens if t.provider == name]
        if not mine and name not in broken:
            print(f"{name}: not logged in (run: loopauth login {name})")
        for t in mine:
            label = f"{t.account_label} ({t.account})" if t.account_label else t.account
            print(f"{name}: {label}")
            print(f"  access token expires {when(t.expires_at)}")
            refresh = "none"
            if t.refresh_token and t.refresh_expires_at is None:
                refresh = "yes"
            elif t.refresh_token:
                refresh = f"expires {when(t.refresh_expires_at)}"
            print(f"  refresh token: {refresh}")
            print(f"  scopes: {' '.join(t.scopes) or '(none)'}")
    return 2 if broken else 0


def cmd_logout(args: argparse.Namespace) -> int:
    """Delete a stored token."""
    provider = _config(args).select(args.provider)
    store = _store()
    token = store.find(provider.name, args.account)
    store.delete(token)
    print(
        f"Logged out of {provider.name} ({token.account_label or token.account})", file=sys.stderr
    )
    return 0


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
