"""A real, private Secret Service for tests: gnome-keyring-daemon on a D-Bus session of its own.

Works as root and in containers without a desktop session:

1. a private folder in /tmp (short: a unix socket path holds at most 107 bytes) with `run/`
   (0700, XDG_RUNTIME_DIR) and `home/` (HOME, with XDG_DATA_HOME=home/data: gnome-keyring's
   login.keyring goes there, never into the real home);
2. `dbus-daemon --config-file=bus.conf --nofork --nopidfile --print-address=1`, bus.conf being
   BUS_CONFIG below: a session bus on unix:path=RUN/bus that activates no service (Debian's
   session config would D-Bus-activate a second gnome-keyring-daemon, without the password,
   for any call that reaches org.freedesktop.secrets before ours owns the name). Its first line
   on stdout is the bus address (DBUS_SESSION_BUS_ADDRESS);
3. `gnome-keyring-daemon --foreground --unlock --components=secrets --control-directory=RUN/keyring`
   with that address, the password written to its stdin, then stdin closed. The password must
   not be empty: with an empty one no "login" collection is created, and the first write fails
   with "Failed to create the collection: Prompt dismissed" (there is no prompter). With one,
   the "login" collection is created, unlocked, and is the default collection;
4. wait until org.freedesktop.secrets has an owner (NameHasOwner: never activates) and the
   default collection is unlocked (about 0.1 s), then use
   PYTHON_KEYRING_BACKEND=keyring.backends.SecretService.Keyring and the address.

Both daemons are our children (--nofork, --foreground), so teardown terminates and reaps them.
`python tests/secret_service.py COMMAND...` runs a command with such a service.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

DBUS_DAEMON = "/usr/bin/dbus-daemon"
GNOME_KEYRING = "/usr/bin/gnome-keyring-daemon"
BACKEND = "keyring.backends.SecretService.Keyring"
PASSWORD = "loopauth-test"
SECRETS = "org.freedesktop.secrets"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# A session bus that activates nothing: the session config would start a second
# gnome-keyring-daemon (without our password) for the first call that comes too early.
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={run}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def _wait_for_login_collection(address: str, keyring: subprocess.Popen[bytes], log: str) -> None:
    """Wait until the daemon owns its name and the default ("login") collection is unlocked."""
    import secretstorage
    from jeepney.bus_messages import message_bus
    from jeepney.io.blocking import open_dbus_connection

    deadline = time.monotonic() + 10
    problem = "no answer"
    with open_dbus_connection(bus=address) as connection:
        while time.monotonic() < deadline:
            if keyring.poll() is not None:
                raise RuntimeError(
                    f"gnome-keyring-daemon exited {keyring.returncode}: {_tail(log)}"
                )
            # NameHasOwner first: a call to an unowned name is an error, never a start.
            owned = connection.send_and_get_reply(message_bus.NameHasOwner(SECRETS), timeout=5)
            if owned.body[0]:
                try:
                    if not secretstorage.Collection(connection).is_locked():  # "default" alias
                        return
                    problem = "the login collection is locked"
                except secretstorage.exceptions.SecretStorageException as exc:
                    problem = f"{type(exc).__name__}: {exc}"
            time.sleep(0.01)
    raise RuntimeError(f"gnome-keyring-daemon did not come up ({problem}): {_tail(log)}")


def _tail(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()[-2000:]
    except OSError:
        return ""


@contextmanager
def secret_service(password: str = PASSWORD) -> Iterator[dict[str, str]]:
    """Run a private Secret Service; yield the environment variables that reach it."""
    if not password:
        raise ValueError("gnome-keyring creates no login collection for an empty password")
    folder = tempfile.mkdtemp(prefix="loopauth-ss-")
    run, home = os.path.join(folder, "run"), os.path.join(folder, "home")
    os.mkdir(run, 0o700)
    os.mkdir(home, 0o700)
    env = {
        **os.environ,
        "HOME": home,
        "XDG_RUNTIME_DIR": run,
        "XDG_DATA_HOME": os.path.join(home, "data"),
        "XDG_CONFIG_HOME": os.path.join(home, "config"),
    }
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    log = os.path.join(folder, "daemons.log")
    config = os.path.join(folder, "bus.conf")
    with open(config, "w", encoding="utf-8") as f:
        f.write(BUS_CONFIG.format(run=run))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with open(log, "wb") as err:
            bus = subprocess.Popen(
                [
                    DBUS_DAEMON,
                    f"--config-file={config}",
                    "--nofork",
                    "--nopidfile",
                    "--print-address=1",
                ],
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
            )
            procs.append(bus)
            assert bus.stdout is not None
            address = bus.stdout.readline().decode().strip()
            if not address:
                raise RuntimeError(f"dbus-daemon printed no address: {_tail(log)}")
            env["DBUS_SESSION_BUS_ADDRESS"] = address
            keyring = subprocess.Popen(
                [
                    GNOME_KEYRING,
                    "--foreground",
                    "--unlock",
                    "--components=secrets",
                    f"--control-directory={run}/keyring",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
            procs.append(keyring)
            assert keyring.stdin is not None
            keyring.stdin.write(password.encode())
            keyring.stdin.close()
        _wait_for_login_collection(address, keyring, log)
        yield {
            "DBUS_SESSION_BUS_ADDRESS": address,
            "XDG_RUNTIME_DIR": run,
            "PYTHON_KEYRING_BACKEND": BACKEND,
        }
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for proc in procs:
            if proc.stdout is not None:
                proc.stdout.close()
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    """Run a command with a private Secret Service: python tests/secret_service.py CMD..."""
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    with secret_service() as env:
        return subprocess.call(argv, env={**os.environ, **env})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
