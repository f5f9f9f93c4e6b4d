"""A throwaway redis-server for the redis store's tests: loopback, a free port, a password.

It keeps nothing on disk (no RDB snapshots, no AOF) and is always terminated. A missing
redis-server skips the tests that need it, or fails them with CI=true (loopauth.testing).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopauth.testing import free_port, require_program

REDIS_SERVER = os.environ.get("LOOPAUTH_REDIS_SERVER", "/usr/bin/redis-server")


@dataclass
class RedisServer:
    """A running redis-server on 127.0.0.1."""

    port: int
    password: str
    process: subprocess.Popen[bytes]
    folder: Path

    def url(self, db: int = 0, password: str | None = None) -> str:
        """A store URL with the password written in (tests of the store object)."""
        return (
            f"redis://:{self.password if password is None else password}@127.0.0.1:{self.port}/{db}"
        )

    def client(self, db: int = 0) -> Any:
        """A plain redis-py client, to look at (and tamper with) what the store wrote."""
        import redis

        return redis.Redis(
            host="127.0.0.1", port=self.port, db=db, password=self.password, socket_timeout=5
        )

    def log(self) -> str:
        """What the server printed (for a failing test's message)."""
        try:
            return (self.folder / "redis.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def _start(folder: Path, exe: str) -> RedisServer:
    port = free_port()
    password = "rpw-" + secrets.token_hex(12)  # distinctive: tests look for it in every output
    conf = folder / "redis.conf"
    # In a 0600 file rather than on the command line, where `ps` would show the password.
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\nsave ''\nappendonly no\nrequirepass {password}\n"
        f"dir {folder}\ndaemonize no\nlogfile {folder / 'redis.log'}\n",
        encoding="utf-8",
    )
    conf.chmod(0o600)
    process = subprocess.Popen(
        [exe, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    server = RedisServer(port, password, process, folder)
    client = server.client()
    deadline = time.monotonic() + 10
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited ({process.returncode}): {server.log()}")
            try:
                if client.ping():
                    return server
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer PING: {server.log()}")
                time.sleep(0.02)
    except BaseException:
        _stop(process)
        raise
    finally:
        client.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    """Run a redis-server in `folder` until the block ends."""
    exe = require_program(REDIS_SERVER, "apt-get install redis-server")
    for attempt in range(3):  # the free port may be taken before redis-server binds it
        try:
            server = _start(folder, exe)
            break
        except RuntimeError:
            if attempt == 2:
                raise
    try:
        yield server
    finally:
        _stop(server.process)
