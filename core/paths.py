"""Per-user directories and config-file discovery, kept import-light for the cached-token path."""

from __future__ import annotations

import os
import sys

APP = "loopauth"


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


def config_candidates(explicit: str | None = None) -> list[str]:
    """Return where providers.yaml is looked for, in order."""
    if explicit:
        return [explicit]
    env = os.environ.get("LOOPAUTH_CONFIG")
    if env:
        return [env]
    return ["providers.yaml", os.path.join(user_config_dir(), "providers.yaml")]


def find_config(explicit: str | None = None) -> str | None:
    """Return the absolute path of the providers.yaml in use, or None when there is none."""
    for candidate in config_candidates(explicit):
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    return None
