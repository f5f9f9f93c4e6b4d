"""Per-user directories and config-file discovery, kept import-light for the cached-token path."""

from __future__ import annotations

import os
import sys

APP = "loopauth"
MAX_CONFIG_BYTES = 1 << 20  # a providers.yaml is a few KiB; anything over this is refused unread


def _home() -> str:
    return os.path.expanduser("~")


def user_data_dir() -> str:
    """Return the per-user data directory (same answer as platformdirs.user_data_dir)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(_home(), "AppData", "Local")
        return os.path.join(base, APP)
    if sys.platform == "darwin":
        return os.path.join(_home(), "Library", "Application Support", APP)
    base = os.environ.get("XDG_DATA_HOME", "").strip() or os.path.join(_home(), ".local", "share")
    return os.path.join(base, APP)


def user_config_dir() -> str:
    """Return the per-user config directory (same answer as platformdirs.user_config_dir)."""
    if sys.platform in ("win32", "darwin"):
        return user_data_dir()
    base = os.environ.get("XDG_CONFIG_HOME", "").strip() or os.path.join(_home(), ".config")
    return os.path.join(base, APP)


def home() -> str:
    """Return loopauth's data home: $LOOPAUTH_HOME or the per-user data directory."""
    return os.environ.get("LOOPAUTH_HOME") or user_data_dir()


# Where a providers.yaml came from; only the current folder's needs the user's approval.
EXPLICIT, ENVIRONMENT, CURRENT_FOLDER, USER_CONFIG = (
    "--config",
    "$LOOPAUTH_CONFIG",
    "the current folder",
    "the user config folder",
)


def config_candidates(explicit: str | None = None) -> list[tuple[str, str]]:
    """Return where providers.yaml is looked for, in order, each with its origin."""
    if explicit:
        return [(explicit, EXPLICIT)]
    env = os.environ.get("LOOPAUTH_CONFIG")
    if env:
        # A relative one names a file in whatever folder the user is in: approved like ./'s.
        return [(env, ENVIRONMENT if os.path.isabs(env) else CURRENT_FOLDER)]
    user = os.path.join(user_config_dir(), "providers.yaml")
    try:
        here = os.path.realpath("providers.yaml")
    except OSError:  # the current folder was deleted under us
        return [(user, USER_CONFIG)]
    if os.path.normcase(here) == os.path.normcase(os.path.realpath(user)):
        return [(user, USER_CONFIG)]
    return [("providers.yaml", CURRENT_FOLDER), (user, USER_CONFIG)]


def find_config(explicit: str | None = None) -> tuple[str, str] | None:
    """Return the absolute path of the providers.yaml in use and its origin, or None."""
    for candidate, origin in config_candidates(explicit):
        try:
            if os.path.isfile(candidate):
                return os.path.abspath(candidate), origin
        except OSError:  # a relative path in a deleted current folder
            continue
    return None
