"""`loopauth token` for a cached, valid token without YAML, pluggy, authlib or requests.

A small JSON cache of the resolved, non-secret settings (default provider, provider names,
refresh leeway) stands in for providers.yaml; it is keyed by the file's path, size and mtime
and by the environment variables those settings use, and rebuilt whenever the full loader runs.
"""

from __future__ import annotations

import json
import os
import sys

from .. import paths, private, snapshot
from ..errors import UnsafePath
from .output import token_output

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..config import Config
    from ..provider import Provider

CACHE_VERSION = 5

# The account lock taken by a caller that found the token expired; held until the process
# ends (or main() releases it) so the full CLI refreshes under it while others wait.
_held: list[object] = []


def _cache_path(config_path: str) -> str:
    key = private.sha256(os.path.normcase(config_path).encode())[:16]
    return os.path.join(paths.home(), "cache", f"config-{key}.json")


def _digest(value: str | None) -> str | None:
    return None if value is None else private.sha256(value.encode("utf-8", "surrogatepass"))


def write_cache(config: Config) -> None:
    """Record what the cached-token path needs from a freshly loaded providers.yaml."""
    try:
        if config.read_stamp is None:  # not loaded from a file: nothing to key a cache on
            return
        mtime_ns, size = config.read_stamp
        data = {
            "version": CACHE_VERSION,
            "path": config.path,
            "mtime_ns": mtime_ns,
            "size": size,
            # Digests, not values: some of these variables hold secrets.
            "env": {k: _digest(v) for k, v in config.env_used.items()},
            # Which plugins are installed decides which providers are valid.
            "plugins": snapshot.key_digest(),
            "default": config.default,
            "providers": {
                name: {
                    "plugin": p.plugin,
                    "refresh_leeway": p.refresh_leeway,
                    # Only the file store is read here; for others the full CLI answers.
                    "file_store": _plain_file_store(p),
                    "lacks": p.lacks(),
                }
                for name, p in config.providers.items()
            },
            # Providers that only lack variables: not broken, and status still reads them.
            "incomplete": {
                name: {
                    "variables": list(variables),
                    "plugin": config.partial[name].plugin if name in config.partial else None,
                    "file_store": name in config.partial
                    and _plain_file_store(config.partial[name]),
                    "lacks": config.partial[name].lacks() if name in config.partial else [],
                }
                for name, variables in config.incomplete().items()
            },
            "broken": sorted(config.errors),
            # ConfigError texts quote ${VAR}s, never their values: safe to keep.
            "errors": {name: str(error) for name, error in config.errors.items()},
        }
        path = _cache_path(config.path)
        private.own_dir(os.path.dirname(path))
        private.write(path, json.dumps(data).encode())
    except OSError:
        pass  # the cache only saves time; the full loader works without it
    except UnsafePath as exc:  # worth a word: someone else may be trying to plant one
        import logging

        logging.getLogger("loopauth").warning("not caching providers.yaml: %s", exc)


def _plain_file_store(provider: Provider) -> bool:
    """Return True for a provider whose tokens are in the default file store."""
    settings = provider.settings
    return (settings.get("store") or "file") == "file" and not settings.get("store_options")


def read_cache(config_path: str) -> dict[str, object] | None:
    """Return the cached settings when they still match providers.yaml, else None."""
    try:
        st = os.stat(config_path)
        # Only a cache of our own in a private folder: a planted one could skip refreshes.
        data = json.loads(private.read(_cache_path(config_path), 1 << 20))
    except (OSError, ValueError, UnsafePath):
        return None
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return None
    if (data.get("path"), data.get("mtime_ns"), data.get("size")) != (
        config_path,
        st.st_mtime_ns,
        st.st_size,
    ):
        return None
    if data.get("plugins") != snapshot.key_digest():
        return None
    env = data.get("env") or {}
    if any(_digest(os.environ.get(k)) != v for k, v in env.items()):
        return None
    return data


def parse(argv: list[str]) -> tuple[str | None, str | None, str | None, bool] | None:
    """Parse `token [PROVIDER] [--account A] [--json]`, `--config F` anywhere; else None.

    The full parser must read every list accepted here the same way (tests/test_cli_grammar.py);
    anything else, -v included, is declined and left to it.
    """
    config = provider = account = None
    as_json = seen_token = False
    args = iter(argv)
    for arg in args:
        option, has_value, value = arg.partition("=")
        if option == "--config" or (option == "--account" and seen_token):
            if not has_value:
                # argparse takes a following `-x` for a missing value: let it say so.
                value = next(args, "-")
                if value.startswith("-"):
                    return None
            if option == "--config":
                config = value
            else:
                account = value
        elif not seen_token:
            if arg != "token":  # only global options come before the command
                return None
            seen_token = True
        elif arg == "--json":
            as_json = True
        elif arg.startswith("-") or provider is not None:
            return None
        else:
            provider = arg
    return (config, provider, account, as_json) if seen_token else None


def try_token(argv: list[str]) -> int | None:
    """Print a cached, fresh token and return 0; return None to let the full CLI handle it."""
    try:
        return _try_token(argv)
    except Exception:  # any doubt: the full CLI answers, and reports problems properly
        return None


def settings(config_arg: str | None) -> dict[str, object] | None:
    """Return the cached settings of the providers.yaml in use, or None (the full loader then)."""
    found = paths.find_config(config_arg)
    if found is None:
        return None
    config_path, origin = found
    if origin == paths.CURRENT_FOLDER:  # an unapproved file: the full CLI says why
        import stat

        from .. import trust

        if trust.file_problem(config_path):  # another user's, or open to others
            return None
        # Non-blocking, and checked on the descriptor: a FIFO swapped in never hangs us.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(config_path, flags)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            if not trust.is_trusted(config_path, f.read(paths.MAX_CONFIG_BYTES + 1)):
                return None
    return read_cache(config_path)


def _try_token(argv: list[str]) -> int | None:
    parsed = parse(argv)
    if parsed is None:
        return None
    config_arg, provider, account, as_json = parsed
    cache = settings(config_arg)
    if cache is None:
        return None
    providers = cache.get("providers")
    if not isinstance(providers, dict):
        return None
    if provider is None:
        provider = cache.get("default") or (  # type: ignore[assignment]
            next(iter(providers)) if len(providers) == 1 and not cache.get("broken") else None
        )
    if provider not in providers or providers[provider].get("file_store") is not True:
        return None
    from ..store import TokenStore

    store = TokenStore()
    token = store.find(provider, account)  # type: ignore[arg-type]
    leeway = float(providers[provider]["refresh_leeway"])  # always written; else falls through
    if not token.is_fresh(leeway):
        # Expired: wait for whoever is refreshing (or become the one who does), then re-read;
        # waiting this way costs no YAML, plugins or HTTP libraries.
        lock = store.lock(provider, token.account)  # type: ignore[arg-type]
        lock.acquire()
        _held.append(lock)
        token = store.read(provider, token.account)  # type: ignore[arg-type]
        if not token.is_fresh(leeway):
            return None  # still held: the full CLI refreshes under it, others keep waiting
    sys.stdout.write(token_output(token, as_json) + "\n")
    sys.stdout.flush()
    return 0


def release() -> None:
    """Release the account lock the fast path took, if any."""
    while _held:
        _held.pop().release()  # type: ignore[attr-defined]
