"""What every comparison shares: rows and targets, timing, the wheel venv, logins, processes.

Nothing here is a target: each comparison module measures a baseline and a subject in the same
run and returns `Row`s; `run.py` prints and records them. Everything listens on 127.0.0.1 with a
random port, and every process started here is stopped through the run's `ExitStack`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
DEFAULT_RUNS = 40
CMD_TIMEOUT = 180.0  # seconds for any one process; a hung one is an error row, not a hang
# What the wheel venv gets besides the wheel: the store extras and the login comparison's rival.
VENV_EXTRAS = "keyring,redis"
VENV_REQUIREMENTS = ("google-auth-oauthlib>=1.2",)
# Files the wheel is built from (copied to a temp folder: the tree stays untouched).
WHEEL_SOURCES = ("core", "plugins", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in")


class BenchError(Exception):
    """A comparison could not be measured; the message becomes its error row."""


class Skip(Exception):
    """A row cannot be measured here (a missing program, a store not available yet)."""


# -- rows ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Target:
    """`subject / baseline` must be <= (or >=) `value`."""

    op: str  # "<=" or ">="
    value: float

    def met(self, ratio: float) -> bool:
        """Whether `ratio` meets the target."""
        return ratio <= self.value if self.op == "<=" else ratio >= self.value

    def __str__(self) -> str:
        return f"{'≤' if self.op == '<=' else '≥'} {self.value:g}x"


@dataclasses.dataclass
class Row:
    """One line of the table: a subject against its baseline, measured in the same run."""

    comparison: str
    name: str
    baseline: str
    subject: str
    base_value: str = ""  # the baseline's median, with its unit ("21.3 ms", "1,850 req/s")
    subj_value: str = ""
    ratio: float | None = None  # median subject / median baseline
    lo: float | None = None  # lowest and highest per-round ratio
    hi: float | None = None
    target: Target | None = None
    condition_ok: bool = True  # a non-ratio condition of the target (e.g. exactly 1 refresh)
    note: str = ""
    skipped: str | None = None  # why the row could not be measured here
    error: str | None = None  # why the comparison failed to run

    @property
    def met(self) -> bool | None:
        """True/False against the target; None when there is no target or nothing measured."""
        if self.target is None or self.ratio is None or self.error or self.skipped:
            return None
        return self.target.met(self.ratio) and self.condition_ok

    @property
    def result(self) -> str:
        """What the table says in its last column."""
        if self.error:
            return "ERROR"
        if self.skipped:
            return "skipped"
        if self.target is None:
            return "measured"
        return "met" if self.met else "MISSED"

    @property
    def failed(self) -> bool:
        """An error, or a missed target: the run exits non-zero."""
        return bool(self.error) or self.met is False


def ratio_row(
    comparison: str,
    name: str,
    baseline: str,
    subject: str,
    base_rounds: Sequence[Sequence[float]],
    subj_rounds: Sequence[Sequence[float]],
    *,
    target: Target | None = None,
    unit: str = "s",
    note: str = "",
) -> Row:
    """A row from per-round samples: the ratio of the overall medians, min/max over rounds.

    `unit` "s" formats times (µs, ms or s); any other unit (e.g. "req/s") formats rates.
    """
    base_all = [x for r in base_rounds for x in r]
    subj_all = [x for r in subj_rounds for x in r]
    if not base_all or not subj_all:
        raise BenchError(f"{name}: no samples")
    base_med, subj_med = statistics.median(base_all), statistics.median(subj_all)
    per_round = [
        statistics.median(s) / statistics.median(b)
        for b, s in zip(base_rounds, subj_rounds, strict=True)
        if b and s
    ]
    return Row(
        comparison,
        name,
        baseline,
        subject,
        base_value=fmt_value(base_med, unit),
        subj_value=fmt_value(subj_med, unit),
        ratio=subj_med / base_med,
        lo=min(per_round),
        hi=max(per_round),
        target=target,
        note=note or f"{len(subj_all)} samples in {len(per_round)} rounds",
    )


def fmt_value(value: float, unit: str) -> str:
    """Format a median for the table."""
    if unit == "s":
        if value < 1e-3:
            return f"{value * 1e6:,.2f} µs"
        return f"{value * 1000:,.1f} ms" if value < 1 else f"{value:,.2f} s"
    return f"{value:,.0f} {unit}"


def split_rounds(total: int, rounds: int) -> list[int]:
    """Split `total` samples into `rounds` rounds of (nearly) equal size, each at least 1."""
    rounds = max(1, min(rounds, total))
    base, extra = divmod(max(total, rounds), rounds)
    return [base + (i < extra) for i in range(rounds)]


# -- the run ------------------------------------------------------------------------------------


class Context:
    """What a comparison gets: the repetition scale, a private temp folder, the wheel venv."""

    def __init__(self, runs: int, tmp: Path) -> None:
        self.runs = runs
        self.tmp = tmp
        # What the current comparison started (emulators, servers): closed when it ends.
        self.stack = contextlib.ExitStack()
        self._venv: Venv | BenchError | None = None

    def log(self, message: str) -> None:
        """Progress on stderr (the table goes to stdout)."""
        print(f"bench: {message}", file=sys.stderr, flush=True)

    def scratch(self, name: str) -> Path:
        """A fresh private folder for one comparison (or one part of it)."""
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.tmp))
        path.chmod(0o700)
        return path

    def venv(self) -> Venv:
        """The regular (non-editable) install of the current tree, built once per run."""
        if self._venv is None:
            try:
                self._venv = wheel_venv(self.log)
            except BenchError as exc:
                self._venv = exc
        if isinstance(self._venv, BenchError):
            raise BenchError(f"wheel venv unavailable: {self._venv}")
        return self._venv


def child_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of every process timed: no PYTHON* or LOOPAUTH_* variables, no browser.

    PYTHONDONTWRITEBYTECODE and the like change start-up times and are not what users run with;
    XDG folders point into the run's temp folder so no user configuration is read.
    """
    drop = ("PYTHON", "LOOPAUTH_", "VIRTUAL_ENV", "BROWSER", "DISPLAY", "WAYLAND_DISPLAY")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    if home is not None:
        env["LOOPAUTH_HOME"] = str(home)
        for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data")):
            folder = home.parent / f"xdg-{sub}"
            folder.mkdir(mode=0o700, exist_ok=True)
            env[var] = str(folder)
    env.update(extra)
    return env


# -- timing -------------------------------------------------------------------------------------


def run_cmd(
    cmd: Sequence[str], env: dict[str, str], cwd: Path, *, timeout: float = CMD_TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    """Run to completion; a failure is a BenchError quoting the end of its stderr."""
    try:
        proc = subprocess.run(
            list(cmd),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{short(cmd)} took over {timeout:g} s") from None
    if proc.returncode != 0:
        raise BenchError(f"{short(cmd)} exited {proc.returncode}: {tail(proc.stderr)}")
    return proc


def time_cmd(cmd: Sequence[str], env: dict[str, str], cwd: Path) -> float:
    """Wall time of one run of `cmd`, from start to exit (its output is discarded)."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            list(cmd),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=CMD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{short(cmd)} took over {CMD_TIMEOUT:g} s") from None
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(f"{short(cmd)} exited {proc.returncode}: {tail(proc.stderr)}")
    return elapsed


def interleaved(
    commands: Mapping[str, tuple[Sequence[str], dict[str, str]]],
    cwd: Path,
    rounds: list[int],
    warmups: int = 2,
    log: Callable[[str], None] | None = None,
) -> dict[str, list[list[float]]]:
    """Time each command `sum(rounds)` times, one of each in turn, grouped into rounds.

    Turns rotate the starting command, so no command always runs right after the same other.
    """
    names = list(commands)
    for _ in range(warmups):
        for name in names:
            cmd, env = commands[name]
            time_cmd(cmd, env, cwd)
    out: dict[str, list[list[float]]] = {name: [] for name in names}
    turn = 0
    for r, size in enumerate(rounds):
        for name in names:
            out[name].append([])
        for _ in range(size):
            order = names[turn % len(names) :] + names[: turn % len(names)]
            turn += 1
            for name in order:
                cmd, env = commands[name]
                out[name][r].append(time_cmd(cmd, env, cwd))
        if log is not None:
            log(f"  round {r + 1}/{len(rounds)} done")
    return out


def short(cmd: Sequence[str]) -> str:
    """A command line for messages: programs and files without their (temp) folders."""
    return " ".join(os.path.basename(c) if os.path.isabs(c) else c for c in cmd)


def tail(data: bytes | str | None, lines: int = 3) -> str:
    """The last lines of a process's output, on one line."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else (data or "")
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or "(no output)"


# -- the wheel venv -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Venv:
    """A virtual environment with the wheel installed."""

    path: Path
    wheel_sha: str

    @property
    def python(self) -> str:
        """Its interpreter."""
        return str(self.path / "bin" / "python")

    @property
    def loopauth(self) -> str:
        """Its console script."""
        return str(self.path / "bin" / "loopauth")


def cache_root() -> Path:
    """Where wheel venvs are kept between runs: a private folder under the system temp dir."""
    root = Path(tempfile.gettempdir()) / f"loopauth-bench-cache-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    st = root.lstat()
    if not root.is_dir() or root.is_symlink() or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise BenchError(f"{root} is not a private folder of this user; remove it")
    return root


def wheel_content_hash(wheel: Path) -> str:
    """SHA-256 over the wheel's member names and contents (zip timestamps change every build)."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as zf:
        for name in sorted(zf.namelist()):
            digest.update(name.encode() + b"\0" + zf.read(name) + b"\0")
    return digest.hexdigest()


def wheel_venv(log: Callable[[str], None]) -> Venv:
    """Build a wheel of the tree and install it into a venv cached by the wheel's content hash."""
    root = cache_root()
    with tempfile.TemporaryDirectory(prefix="wheel-", dir=root) as build:
        src, out = Path(build) / "src", Path(build) / "dist"
        src.mkdir()
        for name in WHEEL_SOURCES:
            path = ROOT / name
            if path.is_dir():
                shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
            elif path.is_file():
                shutil.copy2(path, src / name)
        log("building the wheel (pip wheel --no-deps) from a copy of the tree")
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
            capture_output=True,
            timeout=600,
            check=False,
        )
        wheels = list(out.glob("loopauth-*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            raise BenchError(f"pip wheel failed: {tail(proc.stderr)}")
        wheel = wheels[0]
        key_src = wheel_content_hash(wheel) + VENV_EXTRAS + "".join(VENV_REQUIREMENTS)
        key = hashlib.sha256((key_src + sys.version).encode()).hexdigest()[:16]
        venv = root / f"venv-{key}"
        with open(root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two benches at once build one venv, not two halves
            if (venv / ".bench-ok").is_file():
                log(f"reusing the wheel venv {venv}")
                return Venv(venv, key)
            for old in root.glob("venv-*"):  # older trees' venvs: keep the cache small
                shutil.rmtree(old, ignore_errors=True)
            log(f"installing the wheel into a fresh venv {venv} (dependencies from the index)")
            base = getattr(sys, "_base_executable", sys.executable)
            steps = [
                [base, "-m", "venv", str(venv)],
                [
                    str(venv / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    f"{wheel}[{VENV_EXTRAS}]",
                    *VENV_REQUIREMENTS,
                ],
            ]
            for step in steps:
                proc = subprocess.run(step, capture_output=True, timeout=900, check=False)
                if proc.returncode != 0:
                    shutil.rmtree(venv, ignore_errors=True)
                    raise BenchError(f"{short(step[:4])} failed: {tail(proc.stderr)}")
            (venv / ".bench-ok").write_text(wheel.name + "\n")
    return Venv(venv, key)


# -- providers.yaml and logins ------------------------------------------------------------------


def write_config(folder: Path, body: str) -> Path:
    """Write a private providers.yaml into `folder` (0700) and return its path."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / "providers.yaml"
    path.write_text(body)
    path.chmod(0o600)
    return path


def emu_config(issuer: str, *, extra: str = "", top: str = "", name: str = "emu") -> str:
    """A providers.yaml with one provider on the emulator's public demo client."""
    return (
        f"{top}providers:\n  {name}:\n    issuer: {issuer}\n    client_id: loopauth-demo\n"
        f"    scope: openid email\n{extra}"
    )


def login_no_browser(
    loopauth: str, config: Path, env: dict[str, str], cwd: Path, *, timeout: float = 60.0
) -> None:
    """`loopauth --config CFG login --no-browser`, answering the URL it prints with `browse`."""
    from loopauth.emulator import browse

    proc = subprocess.Popen(
        [loopauth, "--config", str(config), "login", "--no-browser"],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    failures: list[str] = []

    def answer(url: str) -> None:
        try:
            browse(url)
        except Exception as exc:
            failures.append(f"browse failed: {type(exc).__name__}: {exc}")

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("http"):
                threading.Thread(target=answer, args=(line.strip(),), daemon=True).start()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise BenchError(f"login took over {timeout:g} s: {tail(''.join(lines))}") from None
    reader.join(5)
    if code != 0:
        raise BenchError(f"login exited {code}: {tail(''.join(lines + failures))}")


# -- helper processes ---------------------------------------------------------------------------


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any], name: str, grace: float = 5.0) -> None:
    """Terminate one process we started (by its own pid), killing it if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        print(f"bench: {name} ignored SIGTERM; killing it", file=sys.stderr)
        proc.kill()
        proc.wait()


REDIS_PASSWORD = "loopauth-bench-password"  # loopauth refuses a Redis anyone could read


def _resp(*args: str) -> bytes:
    return f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args
    )


def redis_command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """Send one RESP command (after AUTH) to redis on 127.0.0.1:`port`; return the raw reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(_resp("AUTH", REDIS_PASSWORD))
        s.recv(4096)  # +OK
        s.sendall(_resp(*args))
        return s.recv(4096)


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[int]:
    """A throwaway redis-server on a random loopback port, without persistence; yields the port."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise Skip("redis-server is not installed")
    for _attempt in range(5):
        port = free_port()
        proc = subprocess.Popen(
            [
                exe,
                *("--port", str(port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--requirepass", REDIS_PASSWORD),
            ],
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    if redis_command(port, "PING").startswith(b"+PONG"):
                        break
                time.sleep(0.05)
            else:
                continue  # exited (port taken meanwhile?) or never answered: another port
            yield port
            return
        finally:
            stop_process(proc, "redis-server")
    raise Skip("redis-server did not start")


@contextlib.contextmanager
def secret_service(folder: Path, python: str) -> Iterator[dict[str, str]]:
    """A private D-Bus session with gnome-keyring's Secret Service; yields the env to use it.

    The keyring files go into `folder`. gnome-keyring does not create the login collection from
    an empty password (its prompter needs a display), so a throwaway password unlocks it.
    `python` (with the keyring package) probes the service until it answers.
    """
    for program in ("dbus-run-session", "gnome-keyring-daemon"):
        if shutil.which(program) is None:
            raise Skip(f"{program} is not installed")
    for sub in ("home", "data", "run"):
        (folder / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    script = (
        "printf 'loopauth-bench' | gnome-keyring-daemon --foreground --unlock "
        "--components=secrets >/dev/null 2>&1 &\n"
        'echo "pid=$!"\necho "bus=$DBUS_SESSION_BUS_ADDRESS"\n'
        "read _ignored\nkill $! 2>/dev/null\nwait\n"
    )
    env = {
        **child_env(),
        "HOME": str(folder / "home"),
        "XDG_DATA_HOME": str(folder / "data"),
        "XDG_CONFIG_HOME": str(folder / "home"),
        "XDG_RUNTIME_DIR": str(folder / "run"),
    }
    proc = subprocess.Popen(
        ["dbus-run-session", "--", "sh", "-c", script],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    daemon_pid = 0
    try:
        assert proc.stdout is not None
        values: dict[str, str] = {}
        for line in proc.stdout:
            key, _, value = line.strip().partition("=")
            values[key] = value
            if "bus" in values:
                break
        daemon_pid = int(values.get("pid") or 0)
        if not values.get("bus"):
            raise Skip("dbus-run-session did not start a session bus")
        bus_env = {
            "DBUS_SESSION_BUS_ADDRESS": values["bus"],
            "PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring",
            "XDG_RUNTIME_DIR": str(folder / "run"),
        }
        probe = "import keyring; keyring.set_password('loopauth-bench-probe', 'probe', 'x')"
        deadline = time.monotonic() + 10
        while True:
            done = subprocess.run(
                [python, "-c", probe],
                env={**env, **bus_env},
                capture_output=True,
                timeout=30,
                check=False,
            )
            if done.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise Skip(f"the Secret Service did not answer: {tail(done.stderr, 1)}")
            time.sleep(0.1)
        yield bus_env
    finally:
        with contextlib.suppress(OSError, ValueError):
            if proc.stdin is not None:
                proc.stdin.write("\n")  # the script kills the daemon and ends the session
                proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            stop_process(proc, "dbus-run-session")
        if daemon_pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(daemon_pid, 0)  # still there (the script was killed first): stop it
                os.kill(daemon_pid, signal.SIGTERM)


class ScriptedBrowser:
    """A `$BROWSER` for both sides of the login comparison: hands the URL to `browse` here.

    The command is a two-line sh script writing its argument to a FIFO; a thread of this process
    reads it and runs `loopauth.emulator.browse` (which follows loopauth's launch page too), as
    a real browser is already running when a login starts. Both programs reach it through
    `webbrowser`, so launching costs them the same.
    """

    def __init__(self, folder: Path) -> None:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.fifo = folder / "urls"
        os.mkfifo(self.fifo, 0o600)
        self.command = folder / "browser.sh"
        self.command.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$1\" > '{self.fifo}'\n")
        self.command.chmod(0o700)
        self.failures: list[str] = []
        self.opened = 0
        # O_RDWR: reads never see EOF between writers, and opening never blocks.
        self._fd = os.open(self.fifo, os.O_RDWR)
        self._thread = threading.Thread(target=self._serve, name="scripted-browser", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        from loopauth.emulator import browse

        buffered = b""
        while True:
            chunk = os.read(self._fd, 65536)
            buffered += chunk
            while b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                url = line.decode().strip()
                if url == "STOP":
                    return
                self.opened += 1
                threading.Thread(target=self._browse, args=(browse, url), daemon=True).start()

    def _browse(self, browse: Callable[..., Any], url: str) -> None:
        try:
            result = browse(url)
            if result.status != 200:
                self.failures.append(f"browse ended on HTTP {result.status} at {result.url}")
        except Exception as exc:
            self.failures.append(f"browse failed: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Stop the reader thread and close the FIFO."""
        with contextlib.suppress(OSError):
            os.write(self._fd, b"STOP\n")
        self._thread.join(5)
        with contextlib.suppress(OSError):
            os.close(self._fd)
