"""What the installed plugins register, kept so `--help`, `providers` and `status` need not
load them (importlib.metadata, pluggy and the plugins cost 5x a bare interpreter start).

The snapshot is rebuilt whenever the full plugin manager has loaded. It is keyed by loopauth's
version, $LOOPAUTH_LOAD_PLUGINS, every sys.path entry but the first with its modification time
(installing or removing a distribution changes its folder's) and the loaded plugins' own files.
"""

from __future__ import annotations

import json
import os
import sys

from . import __version__, paths, private

VERSION = 2


def _key() -> list[object]:
    entries: list[object] = [__version__, os.environ.get("LOOPAUTH_LOAD_PLUGINS")]
    # sys.path[0] is the script's folder (`loopauth`) or the current one (`python -m`): it
    # differs between the two ways of starting and changes with every file written in the
    # current folder, and plugins are installed into site-packages, not there.
    for entry in sys.path[1:]:
        try:
            entries.append([entry, os.stat(entry or ".").st_mtime_ns])
        except OSError:
            entries.append([entry, None])
    return entries


def key_digest() -> str:
    """Return a digest of what decides which plugins load (caches that depend on them keep it)."""
    return private.sha256(json.dumps(_key()).encode())


def _path() -> str:
    key = private.sha256(json.dumps(sys.path[1:]).encode())[:16]
    return os.path.join(paths.home(), "cache", f"plugins-{key}.json")


def _files_unchanged(files: object) -> bool:
    if not isinstance(files, list):
        return False
    for item in files:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            return False
        try:
            if os.stat(item[0]).st_mtime_ns != item[1]:
                return False
        except OSError:
            return False
    return True


def read() -> dict[str, object] | None:
    """Return the snapshot when it still describes the installed plugins, else None."""
    try:
        # Our own private file only: a planted one could hide a plugin's failure.
        data = json.loads(private.read(_path(), 1 << 20))
    except (OSError, ValueError, LookupError):
        return None
    except Exception:  # UnsafePath and the like: rebuilt by the full path, which says why
        return None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return None
    if data.get("key") != json.loads(json.dumps(_key())) or not _files_unchanged(data.get("files")):
        return None
    return data


def write() -> None:
    """Record what the (already loaded) plugins registered; a clash is left to the full path."""
    from . import plugin_manager
    from .cli.parser import BUILTIN
    from .errors import LoopauthError

    try:
        commands = plugin_manager.commands()
        data = {
            "version": VERSION,
            "key": _key(),
            "files": _plugin_files(),
            "plugins": [
                {
                    "name": p.name,
                    "distribution": p.distribution,
                    "version": p.version,
                    "builtin": p.builtin,
                }
                for p in plugin_manager.plugins()
            ],
            "failures": plugin_manager.failures(),
            "commands": {n: c.help for n, c in commands.items() if n not in BUILTIN},
            "provider_types": {
                name: t.description for name, t in sorted(plugin_manager.provider_types().items())
            },
            "store_types": sorted(plugin_manager.store_types()),
        }
        path = _path()
        private.own_dir(os.path.dirname(path))
        private.write(path, json.dumps(data).encode())
    except (OSError, LoopauthError):
        pass  # only a speed-up: the full path works without it


def _plugin_files() -> list[list[object]]:
    from .plugin_manager import pm

    files = []
    for plugin in pm.get_plugins():
        module = sys.modules.get(getattr(plugin, "__module__", None) or "") or plugin
        name = getattr(module, "__file__", None)
        if isinstance(name, str):
            try:
                files.append([name, os.stat(name).st_mtime_ns])
            except OSError:
                continue
    return files
