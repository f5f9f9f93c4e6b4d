"""Which browser `loopauth login` opens: $BROWSER, Windows' under WSL, never a text-mode one.

Each test puts small programs on PATH that stand in for the browsers and record what they were
given, and runs the real CLI in a subprocess without --no-browser.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from loopauth.emulator import BrowseResult, browse

pytestmark = pytest.mark.skipif(os.name != "posix", reason="stand-in browsers are #! scripts")


def real_wsl() -> bool:
    return os.path.exists("/proc/sys/fs/binfmt_misc/WSLInterop")


# On a real WSL, loopauth rightly prefers Windows' browser to what these tests stand in.
not_on_wsl = pytest.mark.skipif(real_wsl(), reason="this machine is a WSL")

# A stand-in browser: records its arguments, its terminal and the page it was given (while
# the page exists), then plays the user on that page unless told not to.
RECORDER = r"""#!@PYTHON@
import json, os, stat, sys
record = os.environ["RECORD_TO"]
arg = sys.argv[-1]
path = arg[len("file://"):] if arg.startswith("file://") else arg
if os.environ.get("FROM_WINDOWS"):  # explorer.exe: back from the fake \\wsl.localhost\ path
    path = arg[len(os.environ["FROM_WINDOWS"]):].replace("\\", "/")
seen = {"name": os.path.basename(sys.argv[0]), "argv": sys.argv[1:], "path": path,
        "term": os.environ.get("TERM"), "sid": os.getsid(0)}
try:
    os.close(os.open("/dev/tty", os.O_RDWR))
    seen["tty"] = "opened"
except OSError as exc:
    seen["tty"] = exc.errno
if os.path.exists(path):
    seen["page"] = open(path).read()
    seen["mode"] = stat.S_IMODE(os.stat(path).st_mode)
    seen["dir_mode"] = stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode)
with open(record + ".tmp", "w") as f:
    json.dump(seen, f)
os.replace(record + ".tmp", record)
if "page" in seen and not os.environ.get("JUST_RECORD"):
    from loopauth.emulator import browse
    browse("file://" + path)
sys.exit(int(os.environ.get("EXIT_WITH", "0")))
"""

# A stand-in for wslpath: `wslpath -w /home/u/x` prints \\wsl.localhost\Test\home\u\x
WSLPATH = r"""#!@PYTHON@
import sys
assert sys.argv[1] == "-w"
print("\\\\wsl.localhost\\Test" + sys.argv[2].replace("/", "\\"))
"""


def install(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    program = folder / name
    program.write_text(text.replace("@PYTHON@", sys.executable))
    program.chmod(0o755)
    return program


def recorder(folder: Path, name: str) -> Path:
    return install(folder, name, RECORDER)


def base_env(tmp_path: Path, **changes: str) -> dict[str, str]:
    """The user's environment without a desktop, a $BROWSER or WSL, plus `changes`."""
    drop = ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "WSL_DISTRO_NAME", "WSL_INTEROP")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["RECORD_TO"] = str(tmp_path / "record.json")
    return {**env, **changes}


def run_login(
    config: Path, env: Mapping[str, str], answer_after: str = "Open this URL"
) -> tuple[int, str, BrowseResult | None]:
    """`loopauth login` (a browser may open); answers the URL once `answer_after` is shown."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopauth", "--config", str(config), "login", "--timeout", "20"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
    )
    assert proc.stderr is not None
    lines: list[str] = []
    answered: dict[str, BrowseResult] = {}
    worker = None
    url = None
    for line in proc.stderr:
        lines.append(line)
        url = line.strip() if url is None and line.startswith("http") else url
        if worker is None and url is not None and answer_after in "".join(lines):
            worker = threading.Thread(target=lambda u=url: answered.setdefault("page", browse(u)))
            worker.start()
    code = proc.wait(30)
    if worker is not None:
        worker.join(20)
    return code, "".join(lines), answered.get("page")


def url_state(stderr: str) -> str:
    url = next(line for line in stderr.splitlines() if line.startswith("http"))
    return parse_qs(urlsplit(url).query)["state"][0]


def test_browser_is_honoured_and_gets_the_page_not_the_url(tmp_path: Path, config: Path) -> None:
    bin_dir = tmp_path / "bin"
    recorder(bin_dir, "fakebrowser")
    env = base_env(
        tmp_path, BROWSER="fakebrowser", PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    )
    code, stderr, answered = run_login(config, env)
    assert code == 0, stderr
    assert answered is None and "Opened your browser to log in to emu" in stderr
    seen = json.loads((tmp_path / "record.json").read_text())
    [arg] = seen["argv"]
    state = url_state(stderr)
    assert arg.startswith("file://") and state not in arg  # argv is readable by every user
    assert f"state={state}" in seen["page"] and 'http-equiv="refresh"' in seen["page"]
    assert (seen["mode"], seen["dir_mode"]) == (0o600, 0o700)
    assert not Path(seen["path"]).exists()  # removed once the login ended


def test_under_wsl_wslview_gets_the_pages_path(tmp_path: Path, config: Path) -> None:
    bin_dir = tmp_path / "bin"
    recorder(bin_dir, "wslview")
    env = base_env(
        tmp_path, WSL_DISTRO_NAME="Test", PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    )
    code, stderr, answered = run_login(config, env)
    assert code == 0, stderr
    assert answered is None and "Opened your browser" in stderr
    seen = json.loads((tmp_path / "record.json").read_text())
    [arg] = seen["argv"]
    assert os.path.isabs(arg) and arg == seen["path"]  # a path wslview converts, not a URI
    assert url_state(stderr) not in arg and url_state(stderr) in seen["page"]
    assert (seen["mode"], seen["dir_mode"]) == (0o600, 0o700)


def test_under_wsl_without_wslview_explorer_gets_the_windows_path(
    tmp_path: Path, config: Path
) -> None:
    bin_dir = tmp_path / "bin"
    install(bin_dir, "wslpath", WSLPATH)
    recorder(bin_dir, "explorer.exe")
    # Only the stand-ins on PATH: no wslview, whatever this machine has. explorer.exe answers
    # 1 even when it opened the page; that is no failure.
    env = base_env(
        tmp_path,
        WSL_INTEROP="/run/WSL/1_interop",
        PATH=str(bin_dir),
        FROM_WINDOWS="\\\\wsl.localhost\\Test",
        EXIT_WITH="1",
    )
    code, stderr, answered = run_login(config, env)
    assert code == 0, stderr
    assert answered is None and "no browser could be started" not in stderr
    seen = json.loads((tmp_path / "record.json").read_text())
    [arg] = seen["argv"]
    assert arg.startswith("\\\\wsl.localhost\\Test\\") and "/" not in arg
    assert url_state(stderr) not in arg and url_state(stderr) in seen["page"]
    assert (seen["mode"], seen["dir_mode"]) == (0o600, 0o700)


@not_on_wsl
def test_a_text_mode_browser_named_in_browser_never_runs(tmp_path: Path, config: Path) -> None:
    bin_dir = tmp_path / "bin"
    recorder(bin_dir, "lynx")
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    env = base_env(tmp_path, BROWSER="lynx", TERM="xterm", PATH=path)
    code, stderr, answered = run_login(config, env)
    assert code == 0, stderr
    assert not (tmp_path / "record.json").exists()  # lynx never ran
    assert "$BROWSER names a text-mode browser (lynx); it would take over this terminal" in stderr
    assert "Open this URL in a browser to log in to emu:" in stderr
    assert answered is not None and answered.status == 200  # the user opened it: logged in
    # Another entry of $BROWSER is still honoured.
    recorder(bin_dir, "fakebrowser")
    env["BROWSER"] = os.pathsep.join(["/usr/bin/lynx -accept_all_cookies", "fakebrowser %s"])
    code, stderr, answered = run_login(config, env)
    assert code == 0, stderr
    assert answered is None and "text-mode" not in stderr
    assert json.loads((tmp_path / "record.json").read_text())["name"] == "fakebrowser"


@not_on_wsl
def test_console_browsers_are_not_looked_for_even_with_term_set(
    tmp_path: Path, config: Path
) -> None:
    # A desktop session (DISPLAY) with no desktop browser installed, and TERM set: webbrowser
    # would fall back to the console browsers it finds on PATH, in this terminal.
    bin_dir = tmp_path / "bin"
    for name in ("www-browser", "links", "elinks", "lynx", "w3m"):
        recorder(bin_dir, name)
    env = base_env(tmp_path, DISPLAY=":99", TERM="xterm", PATH=str(bin_dir))
    failed = "no browser could be started; open the URL shown above instead"
    code, stderr, answered = run_login(config, env, answer_after=failed)
    assert code == 0, stderr
    assert not (tmp_path / "record.json").exists()
    assert failed in stderr and answered is not None and answered.status == 200


def test_the_browser_has_no_controlling_terminal(tmp_path: Path, config: Path) -> None:
    """Started from a terminal, the browser can't open /dev/tty: it can't take the terminal."""
    import pty

    bin_dir = tmp_path / "bin"
    recorder(bin_dir, "fakebrowser")
    env = base_env(
        tmp_path,
        BROWSER="fakebrowser",
        TERM="xterm",
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    )
    # The CLI runs in a new session whose controlling terminal is the pseudo-terminal, as in a
    # terminal window; it checks that it can open /dev/tty itself before logging in.
    starter = (
        "import fcntl, os, sys, termios\n"
        "os.setsid()\n"
        "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
        "os.close(os.open('/dev/tty', os.O_RDWR))\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'loopauth', *sys.argv[1:]])\n"
    )
    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", starter, "--config", str(config), "login", "--timeout", "20"],
        stdin=child_fd,
        stdout=child_fd,
        stderr=child_fd,
        env=env,
    )
    os.close(child_fd)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(main_fd, 4096)
        except OSError:  # the terminal closed with the CLI
            break
        if not data:
            break
        chunks.append(data)
    code = proc.wait(30)
    os.close(main_fd)
    screen = b"".join(chunks).decode(errors="replace")
    assert code == 0, screen
    assert "Logged in to emu" in screen
    seen = json.loads((tmp_path / "record.json").read_text())
    assert seen["tty"] != "opened"  # no controlling terminal (ENXIO)
    assert seen["sid"] != proc.pid  # not in the terminal's session
    assert seen["term"] is None  # nor told it runs in one
