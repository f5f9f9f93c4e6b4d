"""The CLI commands (everything but the cached-token fast path)."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import __version__
from .errors import FlowCancelled, LoopauthError, UsageError
from .token import Token

log = logging.getLogger("loopauth")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}\n{self.format_usage().strip()}")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every command."""
    parser = _Parser(
        prog="loopauth",
        description="OAuth2 tokens through the system browser and a loopback listener.",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="providers.yaml to use "
        "(default: $LOOPAUTH_CONFIG, ./providers.yaml, the user config dir)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    parser.add_argument("--version", action="version", version=f"loopauth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(
        name: str,
        help_text: str,
        fn: Callable[[argparse.Namespace], int],
        provider: bool = True,
        account: bool = True,
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        if provider:
            p.add_argument(
                "provider",
                nargs="?",
                metavar="PROVIDER",
                help="provider name (default: `default:` or the only one)",
            )
        if account:
            p.add_argument("--account", metavar="NAME", help="account id or label")
        p.set_defaults(func=fn)
        return p

    p = command(
        "providers",
        "list configured providers and installed plugins",
        cmd_providers,
        provider=False,
        account=False,
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("login", "log in through the browser and store the token", cmd_login)
    p.add_argument(
        "--no-browser", action="store_true", help="do not open a browser; print the URL on stderr"
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="how long to wait for the redirect (default: the provider's, 300)",
    )
    p.add_argument(
        "--output",
        metavar="FILE",
        help="also write the provider's raw token response here (- = stdout)",
    )

    output_help = "also write the provider's latest raw token response here (- = stdout)"
    p = command("token", "print a valid access token (refreshing it first when needed)", cmd_token)
    p.add_argument("--json", action="store_true", help="print a JSON object instead")
    p.add_argument("--output", metavar="FILE", help=output_help)

    p = command("refresh", "refresh the stored token now", cmd_refresh)
    p.add_argument("--output", metavar="FILE", help=output_help)

    p = command(
        "status",
        "show stored accounts, expiry and scopes (never secrets)",
        cmd_status,
        account=False,
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")

    command("logout", "delete a stored token", cmd_logout)

    p = sub.add_parser(
        "trust",
        help="approve a providers.yaml in the current folder (like direnv allow)",
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
    p.set_defaults(func=cmd_trust)

    p = sub.add_parser(
        "emulator",
        help="run a local emulator of a provider's auth server",
        description="Run a local emulator of a provider's authorization server.",
    )
    p.add_argument("name", nargs="?", default="oauth2", help="emulator name (default: oauth2)")
    p.add_argument("--host", default="127.0.0.1", help="loopback address (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    p.add_argument("--access-token-lifetime", type=int, metavar="SECONDS")
    p.add_argument("--rotate-refresh-tokens", action="store_true")
    p.set_defaults(func=cmd_emulator)

    from . import plugin_manager

    for extra in plugin_manager.commands().values():
        if extra.name in sub.choices:
            log.warning("a plugin's command %r clashes with a built-in one; ignored", extra.name)
            continue
        p = command(extra.name, extra.help, extra.run)
        if extra.configure is not None:
            extra.configure(p)
    return parser


def run(argv: list[str]) -> int:
    """Parse and run a command; every LoopauthError becomes a message and its exit code."""
    from .terminal import SafeStream

    # Provider text (errors, account labels, shop names) is printed in many places: escaping
    # control characters at the stream covers all of them, plugins' commands and logs included.
    real = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = SafeStream(real[0]), SafeStream(real[1])
    try:
        return _run(argv)
    finally:
        sys.stdout, sys.stderr = real


def _run(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"loopauth: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.verbose:
        # Our logger only: urllib3's debug lines would print token URLs (TikTok's hold its secret).
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("loopauth: %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
    else:
        logging.basicConfig(format="loopauth: %(message)s", level=logging.WARNING)
    try:
        if not getattr(args, "command", None):
            build_parser().print_help(sys.stderr)
            return 2
        _sigterm_as_interrupt()
        return int(args.func(args))
    except LoopauthError as exc:
        print(f"loopauth: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\nloopauth: cancelled", file=sys.stderr)
        return FlowCancelled.exit_code
    except Exception as exc:  # a bug: say where, but not the message, which may hold a secret
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{os.path.basename(frame.filename)}:{frame.lineno}"
        print(
            f"loopauth: internal error {type(exc).__name__} at {where}; please report it",
            file=sys.stderr,
        )
        return 1
    finally:
        if args.verbose:
            log.removeHandler(handler)


def _sigterm_as_interrupt() -> None:
    # SIGTERM gets the same clean exit as Ctrl+C: the listener's port is closed on the way out.
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):  # not the main thread (e.g. called from a test thread)
        pass


def _config(args: argparse.Namespace) -> Any:
    from .config import load

    return load(args.config)


def _store() -> Any:
    from .store import TokenStore

    return TokenStore()


def _when(ts: float | None) -> str:
    if ts is None:
        return "unknown"
    left = ts - time.time()
    try:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    except (OverflowError, ValueError, OSError):
        return f"at {ts!r} (not a representable time)"
    if left <= 0:
        return f"{stamp} (expired)"
    if left < 120:
        return f"{stamp} (in {left:.0f} s)"
    if left < 7200:
        return f"{stamp} (in {left / 60:.0f} min)"
    if left < 172800:
        return f"{stamp} (in {left / 3600:.0f} h)"
    return f"{stamp} (in {left / 86400:.0f} days)"


def _write_output(target: str, data: dict[str, Any]) -> None:
    from .terminal import json_text

    text = json_text(data, indent=2, ensure_ascii=False) + "\n"
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    if os.path.isdir(target):
        raise UsageError(f"--output {target} is a directory; name a file")
    from . import private

    try:
        private.make_dirs(os.path.dirname(os.path.abspath(target)))  # new folders 0700
        private.write(target, text.encode("utf-8"))  # 0600: it holds tokens
    except OSError as exc:
        raise UsageError(f"cannot write --output {target}: {exc.strerror or exc}") from None


def cmd_providers(args: argparse.Namespace) -> int:
    """List configured providers and installed plugins."""
    from . import plugin_manager

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
    from .flow import Flow

    provider = _config(args).select(args.provider)
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError("--timeout must be a positive, finite number of seconds")
    flow = Flow(provider, account=args.account)
    url = flow.start()
    try:
        opened = False if args.no_browser else flow.launch_browser()
        err = sys.stderr
        if opened:
            print(
                f"Opened your browser to log in to {provider.name}. If it did not open, "
                "visit this URL:",
                file=err,
            )
        else:
            print(f"Open this URL in a browser to log in to {provider.name}:", file=err)
        print(url, file=err, flush=True)  # alone on its line, for people and scripts alike
        timeout = args.timeout if args.timeout is not None else float(provider.get("timeout", 300))
        tty = err.isatty()
        if not tty:
            print(
                f"Waiting up to {timeout:g} s for the redirect to {flow.redirect_uri}",
                file=err,
                flush=True,
            )

        raw = getattr(err, "raw", err)  # our own control sequences, past SafeStream

        def tick(left: float) -> None:
            mins, secs = divmod(int(left + 0.999), 60)
            raw.write(
                f"\r\x1b[2KWaiting for the redirect to {flow.redirect_uri}: "
                f"{mins}:{secs:02d} left (Ctrl+C to cancel)"
            )
            raw.flush()

        try:
            flow.wait(timeout, on_tick=tick if tty else None)
        finally:
            if tty:
                raw.write("\r\x1b[2K")
                raw.flush()
    except BaseException:  # whatever ends the command here closes the port and the launch page
        flow.cancel("interrupted")
        raise
    token = flow.result()
    who = token.account_label or token.account
    extra = f" ({token.account_id})" if token.account_label and token.account_id else ""
    print(f"Logged in to {provider.name} as {who}{extra}; token saved to {flow.saved_to}", file=err)
    if args.output:
        _write_output(args.output, token.raw)
        if args.output != "-":
            print(f"Token response written to {args.output}", file=err)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Print a valid access token, refreshing it first when needed."""
    from .api import ensure_fresh
    from .fastpath import token_output

    provider = _config(args).select(args.provider)
    token = ensure_fresh(provider, args.account, _store())
    if args.output:
        _write_output(args.output, token.raw)
    if args.output != "-":
        print(token_output(token, args.json))
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    """Refresh the stored token now."""
    from .api import ensure_fresh

    provider = _config(args).select(args.provider)
    token = ensure_fresh(provider, args.account, _store(), force=True)
    if args.output:
        _write_output(args.output, token.raw)
    print(
        f"Refreshed {provider.name} ({token.account_label or token.account}); access token "
        f"expires {_when(token.expires_at)}",
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
            print(f"  access token expires {_when(t.expires_at)}")
            refresh = "none"
            if t.refresh_token and t.refresh_expires_at is None:
                refresh = "yes"
            elif t.refresh_token:
                refresh = f"expires {_when(t.refresh_expires_at)}"
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
    from . import trust
    from .config import parse, read_file
    from .oauth import host_of

    path = os.path.abspath(args.file)
    if args.revoke:
        done = trust.revoke(path)
        print(f"{path}: " + ("approval withdrawn" if done else "was not approved"), file=sys.stderr)
        return 0
    if not os.path.lexists(path):
        raise UsageError(f"{path} does not exist")
    why = trust.file_problem(path)
    if why:
        fix = f" (if it is yours alone, first run: chmod go-w {path})" * ("writable" in why)
        raise UsageError(f"{path} {why}; loopauth never approves such a file{fix}")
    data = read_file(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None
    config = parse(text, path)  # a broken file is refused before it is approved
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
    from . import plugin_manager
    from .config import is_loopback_host
    from .emulator import run

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
