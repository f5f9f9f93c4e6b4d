"""An attacker on the same machine: a folder the user cd's into, another local user, a provider
that lies. Each test plays the attack through the CLI, as the user would meet it."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from loopauth.emulator import EmulatorUser, OAuthEmulator, browse
from loopauth.errors import ConfigError
from loopauth.store import TokenStore
from loopauth.testing import cli, login, write_config

posix = pytest.mark.skipif(os.name != "posix", reason="POSIX owners and modes")


def other_uid() -> int:
    """A second local user for the attacker's files: needs root (CI runs as root)."""
    if os.name == "posix" and os.geteuid() == 0:
        return 65534  # nobody
    message = "needs root to own files as a second local user (uid 65534)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


def emu_config(path: Path, emu: OAuthEmulator, extra: str = "") -> Path:
    write_config(
        path,
        f"""
        providers:
          emu:
            issuer: {emu.url}
            client_id: loopauth-demo
            scope: openid profile email
    """,
    )
    path.write_text(path.read_text() + extra)
    return path


def token_file(home: Path, provider: str = "emu") -> Path:
    [path] = (home / "tokens" / provider).glob("*.json")
    return path


# -- 1. A providers.yaml in the current folder ---------------------------------------------


def test_a_providers_yaml_in_the_current_folder_cannot_hijack_the_provider(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OAuthEmulator() as honest, OAuthEmulator() as evil:
        user_dir = tmp_path / "xdg-config" / "loopauth"
        user_dir.mkdir(parents=True)
        emu_config(user_dir / "providers.yaml", honest)
        assert login("login", "emu").returncode == 0
        expired = TokenStore().find("emu")  # so that any `token` must refresh
        expired.expires_at = time.time() - 1
        TokenStore().save(expired)
        path = token_file(isolated)
        snapshot = path.read_bytes()
        repo = tmp_path / "cloned-repo"
        repo.mkdir()
        planted = write_config(
            repo / "providers.yaml",
            f"""
            providers:
              emu:
                client_id: loopauth-demo
                authorization_endpoint: {evil.url}/authorize
                token_endpoint: {evil.url}/token
                refresh_leeway: 999999999
                token_params:
                  aws: ${{AWS_SECRET_ACCESS_KEY}}
        """,
        )
        monkeypatch.chdir(repo)
        env = {"AWS_SECRET_ACCESS_KEY": "aws-secret-value"}
        out = cli("token", "emu", env=env)
        assert out.returncode == 2, out.stderr
        assert str(planted) in out.stderr and "has not been approved" in out.stderr
        assert f"loopauth trust {planted}" in out.stderr and "--config" in out.stderr
        assert out.stdout == "" and "aws-secret-value" not in out.stderr
        # Approved by mistake: the token still goes back only to whoever issued it.
        assert cli("trust").returncode == 0
        out = cli("token", "emu", env=env)
        assert out.returncode == 6, out.stderr
        assert f"127.0.0.1:{honest.port}" in out.stderr and f"127.0.0.1:{evil.port}" in out.stderr
        assert "loopauth sent nothing" in out.stderr and "loopauth login emu" in out.stderr
        assert evil.log == []
        assert path.read_bytes() == snapshot


def test_trust_records_the_exact_content_and_a_change_needs_it_again(
    tmp_path: Path, isolated: Path, emulator: OAuthEmulator
) -> None:
    cfg = emu_config(tmp_path / "providers.yaml", emulator)  # the test's cwd
    assert cli("providers").returncode == 2
    approved = cli("trust")
    assert approved.returncode == 0, approved.stderr
    assert f"Approved {cfg}" in approved.stderr and f"emu: 127.0.0.1:{emulator.port}" in (
        approved.stderr
    )
    listed = json.loads((isolated / "trusted.json").read_text())["files"]
    import hashlib

    assert listed == {str(cfg): hashlib.sha256(cfg.read_bytes()).hexdigest()}
    assert login("login").returncode == 0
    token = cli("token")
    assert token.returncode == 0 and token.stdout.strip()
    # Same size, same mtime, other content: the cached-token path checks the hash too.
    st = cfg.stat()
    cfg.write_text(cfg.read_text().replace("profile", "PROFILE"))
    os.utime(cfg, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = cli("token")
    assert changed.returncode == 2 and changed.stdout == ""
    assert "has changed since you approved it" in changed.stderr
    assert cli("trust").returncode == 0 and cli("token").returncode == 0
    wrong = cli("trust", "--config", str(cfg))  # would not say which file it approves
    assert wrong.returncode == 2 and "--config does not apply" in wrong.stderr
    revoked = cli("trust", "--revoke")
    assert revoked.returncode == 0 and "approval withdrawn" in revoked.stderr
    assert cli("token").returncode == 2
    # Files named explicitly need no approval.
    assert cli("--config", str(cfg), "token").returncode == 0
    assert cli("token", env={"LOOPAUTH_CONFIG": str(cfg)}).returncode == 0


@posix
def test_a_file_of_another_user_or_writable_by_others_is_never_approved(
    tmp_path: Path, emulator: OAuthEmulator
) -> None:
    cfg = emu_config(tmp_path / "providers.yaml", emulator)
    cfg.chmod(0o666)
    out = cli("trust")
    assert out.returncode == 2 and "writable by group or others" in out.stderr
    cfg.chmod(0o644)
    assert cli("trust").returncode == 0
    cfg.chmod(0o664)  # approved, then opened to others: no longer used
    out = cli("providers")
    assert out.returncode == 2 and "writable by group or others" in out.stderr
    cfg.chmod(0o644)
    os.chown(cfg, other_uid(), -1)
    out = cli("providers")
    assert out.returncode == 2 and "owned by another user" in out.stderr
    assert cli("trust").returncode == 2


def test_verbose_names_the_providers_yaml_in_use(tmp_path: Path, config: Path) -> None:
    out = cli("-v", "--config", str(config), "providers")
    assert f"using {config} (from --config)" in out.stderr
    assert cli("trust").returncode == 0
    out = cli("-v", "providers")
    assert f"using {config} (from the current folder)" in out.stderr


# -- 1b. A token is bound to who issued it -------------------------------------------------


def test_a_token_is_refreshed_only_where_it_was_issued(
    tmp_path: Path, isolated: Path, config: Path, emulator: OAuthEmulator
) -> None:
    assert login("--config", str(config), "login").returncode == 0
    path = token_file(isolated)
    bound = json.loads(path.read_text())["bound_to"]
    assert bound == {
        "token_endpoint": f"{emulator.url}/token",
        "refresh_endpoint": f"{emulator.url}/token",
        "issuer": emulator.url,
        "client_id": "loopauth-demo",
    }
    snapshot = path.read_bytes()
    with OAuthEmulator() as other:
        moved = emu_config(
            tmp_path / "moved.yaml", emulator, f"    refresh_endpoint: {other.url}/token\n"
        )
        out = cli("--config", str(moved), "refresh")
        assert out.returncode == 6, out.stderr
        assert f"issued by 127.0.0.1:{emulator.port}" in out.stderr
        assert f"now names 127.0.0.1:{other.port}" in out.stderr
        assert "loopauth login emu" in out.stderr
        assert other.log == []
    with OAuthEmulator() as other:
        issuer = emu_config(tmp_path / "issuer.yaml", other)  # discovery would go to `other`
        out = cli("--config", str(issuer), "refresh")
        assert out.returncode == 6 and f"127.0.0.1:{other.port}" in out.stderr
        assert other.log == []  # nothing sent, not even a discovery request
        creds = emu_config(
            tmp_path / "creds.yaml",
            emulator,
            f"    refresh_endpoint: http://u:${{PASS}}@localhost:{other.port}/token\n",
        )
        out = cli("--config", str(creds), "refresh", env={"PASS": "hunter2-secret"})
        assert out.returncode == 6 and f"now names localhost:{other.port}" in out.stderr
        assert "hunter2" not in out.stderr and other.log == []
    client = write_config(
        tmp_path / "client.yaml",
        f"""
        providers:
          emu:
            issuer: {emulator.url}
            client_id: demo-confidential
            client_secret: demo-secret
    """,
    )
    out = cli("--config", str(client), "refresh")
    assert out.returncode == 6 and "client id 'loopauth-demo'" in out.stderr
    assert "client id 'demo-confidential'" in out.stderr and "demo-secret" not in out.stderr
    assert path.read_bytes() == snapshot
    assert [c["grant_type"] for c in emulator.token_calls] == ["authorization_code"]
    assert cli("--config", str(config), "refresh").returncode == 0


def test_tokens_saved_before_binding_are_bound_on_first_use(
    isolated: Path, config: Path, emulator: OAuthEmulator
) -> None:
    assert login("--config", str(config), "login").returncode == 0
    path = token_file(isolated)
    data = json.loads(path.read_text())
    del data["bound_to"]
    path.write_text(json.dumps(data))
    from loopauth import get_token

    calls = len(emulator.log)
    get_token("emu", config=str(config))  # fresh: bound from the settings, with no request
    assert json.loads(path.read_text())["bound_to"] == {
        "issuer": emulator.url,
        "client_id": "loopauth-demo",
    }
    assert len(emulator.log) == calls
    assert cli("--config", str(config), "refresh").returncode == 0  # discovery tells the rest
    assert json.loads(path.read_text())["bound_to"]["token_endpoint"] == f"{emulator.url}/token"


def test_a_plugin_cannot_send_a_bound_refresh_token_elsewhere(
    isolated: Path, emulator: OAuthEmulator
) -> None:
    import dataclasses
    from collections.abc import Callable

    import loopauth
    from loopauth import api
    from loopauth.config import parse
    from loopauth.errors import NoTokenError
    from loopauth.flow import Flow
    from loopauth.plugin_manager import pm
    from loopauth.provider import Provider, ProviderType, TokenRequest

    with OAuthEmulator() as other:

        def elsewhere(provider: Provider, request: TokenRequest) -> TokenRequest:
            return dataclasses.replace(request, url=f"{other.url}/token")

        class Plugin:
            @loopauth.hookimpl
            def register_provider_types(self, register: Callable[[ProviderType], None]) -> None:
                register(ProviderType("elsewhere", refresh_request=elsewhere))

        pm.register(Plugin(), name="elsewhere")
        try:
            text = f"providers:\n  e:\n    plugin: elsewhere\n    issuer: {emulator.url}\n"
            provider = parse(text + "    client_id: loopauth-demo\n").select("e")
            flow = Flow(provider)
            browse(flow.start())
            flow.wait(10)
            flow.result()
            with pytest.raises(NoTokenError, match="loopauth sent nothing"):
                api.refresh(provider)
        finally:
            pm.unregister(name="elsewhere")
        assert other.log == []
    plain = parse(f"providers:\n  e:\n    issuer: {emulator.url}\n    client_id: loopauth-demo\n")
    assert api.refresh(plain.select("e")).access_token  # the refused refresh left it usable


def test_a_relative_loopauth_config_needs_approval_like_the_current_folders(
    tmp_path: Path, emulator: OAuthEmulator
) -> None:
    emu_config(tmp_path / "mine.yaml", emulator)
    out = cli("providers", env={"LOOPAUTH_CONFIG": "mine.yaml"})
    assert out.returncode == 2 and "has not been approved" in out.stderr
    assert cli("trust", "mine.yaml").returncode == 0
    assert cli("providers", env={"LOOPAUTH_CONFIG": "mine.yaml"}).returncode == 0
    absolute = cli("providers", env={"LOOPAUTH_CONFIG": str(tmp_path / "mine.yaml")})
    assert absolute.returncode == 0


@posix
def test_a_deleted_current_folder_or_a_fifo_is_a_clear_answer(tmp_path: Path, config: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    script = (
        f"cd {gone} && rmdir {gone} && {sys.executable} -m loopauth --config {config} providers"
    )
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "emu" in out.stdout, out.stderr
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    out = cli("trust", str(fifo), timeout=20)
    assert out.returncode == 2 and "is not a regular file" in out.stderr


# -- 3. The browser's command line ---------------------------------------------------------

RECORDING_BROWSER = """
import json, os, stat, sys
from loopauth.emulator import browse
page = sys.argv[1]
path = page[len("file://"):]
st, folder = os.stat(path), os.stat(os.path.dirname(path))
with open(sys.argv[2] + ".tmp", "w") as f:
    json.dump({"argv": sys.argv, "env": sorted(os.environ), "page": open(path).read(),
               "mode": stat.S_IMODE(st.st_mode), "dir_mode": stat.S_IMODE(folder.st_mode),
               "path": path}, f)
os.replace(sys.argv[2] + ".tmp", sys.argv[2])  # whole, before the login can end
browse(page)
"""


def test_the_browser_is_never_given_the_state_nor_the_secret_variables(
    tmp_path: Path, emulator: OAuthEmulator
) -> None:
    cfg = write_config(
        tmp_path / "p.yaml",
        f"""
        providers:
          emu:
            issuer: {emulator.url}
            client_id: demo-confidential
            client_secret: ${{EMU_SECRET}}
    """,
    )
    script = tmp_path / "browser.py"
    script.write_text(RECORDING_BROWSER)
    record = tmp_path / "record.json"
    out = cli(
        "--config",
        str(cfg),
        "login",
        env={"BROWSER": f"{sys.executable} {script} %s {record}", "EMU_SECRET": "demo-secret"},
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(record.read_text())
    url = next(line for line in out.stderr.splitlines() if line.startswith("http"))
    state = parse_qs(urlsplit(url).query)["state"][0]
    assert state not in " ".join(seen["argv"]) and seen["argv"][1].startswith("file://")
    assert state in seen["page"]  # the private page forwards to the URL...
    if os.name == "posix":
        assert (seen["mode"], seen["dir_mode"]) == (0o600, 0o700)  # ...and only we can read it
    assert "EMU_SECRET" not in seen["env"] and "PATH" in seen["env"]
    assert not Path(seen["path"]).exists()  # removed once the login ended


def test_the_launch_page_is_removed_when_login_is_stopped_while_the_browser_starts(
    tmp_path: Path, isolated: Path, config: Path
) -> None:
    import signal

    script = tmp_path / "slow_browser.py"
    script.write_text("import time\ntime.sleep(60)\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopauth", "--config", str(config), "login"],
        env={**os.environ, "BROWSER": f"{sys.executable} {script} %s"},
        stderr=subprocess.PIPE,
        text=True,
    )
    launch = isolated / "launch"
    deadline = time.monotonic() + 20
    while not (launch.is_dir() and list(launch.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(launch.iterdir()), "no launch page was written"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 4
    assert list(launch.iterdir()) == []


@posix
def test_the_launch_folder_is_never_a_planted_link_nor_the_users_own_folder(
    tmp_path: Path, isolated: Path, config: Path
) -> None:
    public = tmp_path / "public_html"
    public.mkdir()
    public.chmod(0o755)
    keep = public / "login-keep1234.html"
    keep.write_text("mine")
    os.utime(keep, (0, 0))  # old enough for a sweep
    isolated.mkdir(parents=True, exist_ok=True)
    (isolated / "launch").symlink_to(public)
    script = tmp_path / "browser.py"
    script.write_text("import sys\nfrom loopauth.emulator import browse\nbrowse(sys.argv[1])\n")
    env = {"BROWSER": f"{sys.executable} {script} %s"}
    out = cli("--config", str(config), "login", "--timeout", "1", env=env)
    # The planted link is refused: no browser, the URL on the terminal instead, nothing touched.
    assert out.returncode == 4, out.stderr
    assert "not opening a browser" in out.stderr and "is a symbolic link" in out.stderr
    assert "Open this URL in a browser" in out.stderr
    assert stat.S_IMODE(public.stat().st_mode) == 0o755 and keep.read_text() == "mine"
    # A folder of the user's own choosing is left as it is; the pages go in a subfolder.
    (isolated / "launch").unlink()
    out = cli("--config", str(config), "login", env={**env, "LOOPAUTH_LAUNCH_DIR": str(public)})
    assert out.returncode == 0 and "Opened your browser" in out.stderr, out.stderr
    assert stat.S_IMODE(public.stat().st_mode) == 0o755 and keep.read_text() == "mine"
    [sub] = [p for p in public.iterdir() if p.is_dir()]
    assert stat.S_IMODE(sub.stat().st_mode) == 0o700 and list(sub.iterdir()) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="snaps and flatpaks are Linux")
def test_a_snap_or_flatpak_browser_gets_its_page_where_its_sandbox_can_read(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopauth import browser

    home, bindir, snapbin = tmp_path / "user", tmp_path / "bin", tmp_path / "snapbin"
    for folder in (home / "snap" / "firefox" / "common", bindir, snapbin):
        folder.mkdir(parents=True)
    (snapbin / "firefox").write_text("#!/bin/sh\n")
    (snapbin / "firefox").chmod(0o755)
    xdg = bindir / "xdg-settings"  # what the desktop says the default browser is
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("LOOPAUTH_LAUNCH_DIR", raising=False)
    monkeypatch.setattr(browser, "SNAP_BIN", str(snapbin))
    mine = f"loopauth-launch-{os.geteuid()}"

    def page_folder(default_browser: str) -> Path:
        xdg.write_text(f"#!/bin/sh\necho {default_browser}\n")
        xdg.chmod(0o755)
        page = Path(browser.write_page("https://login.example.test/?state=s3cret"))
        assert stat.S_IMODE(page.stat().st_mode) == 0o600
        assert stat.S_IMODE(page.parent.stat().st_mode) == 0o700
        browser.remove_page(str(page))
        return page.parent

    assert page_folder("firefox_firefox.desktop") == home / "snap" / "firefox" / "common" / mine
    (home / ".var" / "app" / "org.mozilla.firefox").mkdir(parents=True)
    assert page_folder("org.mozilla.firefox.desktop") == (
        home / ".var" / "app" / "org.mozilla.firefox" / mine
    )
    assert page_folder("google-chrome.desktop") == isolated / "launch"  # not sandboxed
    monkeypatch.setenv("BROWSER", f"{snapbin / 'firefox'} %s")  # $BROWSER naming a snap
    assert page_folder("unused.desktop") == home / "snap" / "firefox" / "common" / mine


@posix
def test_a_lock_file_planted_as_a_link_is_refused(tmp_path: Path, isolated: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    isolated.mkdir(parents=True, exist_ok=True)
    (isolated / "trusted.lock").symlink_to(victim)
    write_config(
        tmp_path / "providers.yaml",
        """
        providers:
          emu:
            issuer: https://login.example.test
            client_id: loopauth-demo
    """,
    )
    out = cli("trust")
    assert out.returncode == 2 and "lock file" in out.stderr and "symbolic link" in out.stderr
    assert victim.read_text() == "precious"


# -- 4. Files under a permissive umask, a shared or planted LOOPAUTH_HOME -------------------


@posix
def test_a_permissive_umask_still_makes_every_folder_0700_and_file_0600(
    tmp_path: Path, config: Path
) -> None:
    home = tmp_path / "a" / "b" / "home"
    output = tmp_path / "x" / "y" / "token.json"
    env = {"LOOPAUTH_HOME": str(home)}
    old = os.umask(0)
    try:
        assert (
            login("--config", str(config), "login", "--output", str(output), env=env).returncode
            == 0
        )
        assert cli("token", env=env).returncode == 2  # not approved yet, nothing more
        assert cli("trust", env=env).returncode == 0
        assert cli("token", env=env).returncode == 0
    finally:
        os.umask(old)
    for folder in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "x", output.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    files = [output]
    for root, dirs, names in os.walk(home):
        for name in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == 0o700, name
        files += [Path(root, name) for name in names]
    assert {f.suffix for f in files} >= {".json", ".lock"} and home / "trusted.json" in files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@posix
def test_output_into_an_existing_folder_leaves_its_mode_alone(tmp_path: Path, config: Path) -> None:
    folder = tmp_path / "shared-reports"
    folder.mkdir()
    folder.chmod(0o755)
    out = login("--config", str(config), "login", "--output", str(folder / "token.json"))
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755  # only folders loopauth creates are 0700
    assert stat.S_IMODE((folder / "token.json").stat().st_mode) == 0o600


@posix
def test_a_token_planted_by_another_user_is_refused(isolated: Path, config: Path) -> None:
    uid = other_uid()
    assert login("--config", str(config), "login").returncode == 0
    path = token_file(isolated)
    os.chown(path, uid, -1)
    out = cli("--config", str(config), "token")
    assert out.returncode == 2 and out.stdout == ""
    assert f"token file {path} is owned by another user" in out.stderr
    # A whole token tree prepared by someone else (a shared LOOPAUTH_HOME) is refused as well.
    os.chown(path, 0, -1)
    for folder in (path.parent, path.parent.parent):
        os.chown(folder, uid, -1)
    out = cli("--config", str(config), "status")
    assert out.returncode == 2 and f"{path.parent} is owned by another user" in out.stderr


@posix
def test_a_token_folder_open_to_others_is_refused(isolated: Path, config: Path) -> None:
    assert login("--config", str(config), "login").returncode == 0
    folder = token_file(isolated).parent
    folder.chmod(0o777)
    out = cli("--config", str(config), "token")
    assert out.returncode == 2 and f"chmod go-w {folder}" in out.stderr


@posix
def test_the_cache_is_never_written_through_a_planted_link(
    tmp_path: Path, isolated: Path, config: Path
) -> None:
    from loopauth.cli.fastpath import _cache_path

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    cache = Path(_cache_path(str(config)))
    cache.parent.mkdir(parents=True, mode=0o700)
    os.symlink(victim, cache)
    last = (
        int(Path("/proc/sys/kernel/ns_last_pid").read_text())
        if Path("/proc/sys/kernel/ns_last_pid").exists()
        else os.getpid()
    )
    for pid in range(last + 1, last + 300):  # where an older version wrote its temp file
        os.symlink(victim, f"{cache}.{pid}.tmp")
    assert cli("--config", str(config), "providers").returncode == 0
    assert victim.read_text() == "precious"
    assert not cache.is_symlink() and stat.S_IMODE(cache.stat().st_mode) == 0o600


@posix
@pytest.mark.parametrize("poison", ["writable", "owner"])
def test_a_poisoned_cache_cannot_skip_a_refresh(
    poison: str, isolated: Path, config: Path, emulator: OAuthEmulator
) -> None:
    from loopauth.cli.fastpath import _cache_path

    assert login("--config", str(config), "login").returncode == 0
    path = token_file(isolated)
    data = json.loads(path.read_text())
    data["expires_at"] = time.time() - 10
    path.write_text(json.dumps(data))
    cache = Path(_cache_path(str(config)))
    cached = json.loads(cache.read_text())
    cached["providers"]["emu"]["refresh_leeway"] = -1e12  # "never refresh"
    cache.write_text(json.dumps(cached))
    if poison == "writable":
        cache.chmod(0o666)
    else:
        os.chown(cache, other_uid(), -1)
    out = cli("--config", str(config), "token")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() != data["access_token"]
    assert [c["grant_type"] for c in emulator.token_calls][-1] == "refresh_token"


@posix
def test_a_trust_list_open_to_others_approves_nothing(isolated: Path, config: Path) -> None:
    assert cli("trust").returncode == 0
    (isolated / "trusted.json").chmod(0o666)
    out = cli("providers")
    assert out.returncode == 2
    assert f"the trust list {isolated / 'trusted.json'} is writable by group or others" in (
        out.stderr
    )


# -- 5. Mix-up with a provider that has no issuer -------------------------------------------


def test_an_iss_from_another_server_is_ignored_when_the_issuer_is_unknown(
    emulator: OAuthEmulator,
) -> None:
    from loopauth.config import parse
    from loopauth.flow import Flow, State

    provider = parse(f"""
providers:
  e:
    client_id: loopauth-demo
    authorization_endpoint: {emulator.url}/authorize
    token_endpoint: {emulator.url}/token
""").select("e")
    flow = Flow(provider)
    url = flow.start()
    state = parse_qs(urlsplit(url).query)["state"][0]
    forged = browse(f"{flow.redirect_uri}?state={state}&code=stolen&iss=https://evil.example")
    assert forged.status == 400 and "another server" in forged.body
    assert flow.state is State.WAITING_FOR_REDIRECT and emulator.token_calls == []
    page = browse(url)  # the emulator's own iss: the origin of the authorization endpoint
    assert page.status == 200
    assert flow.wait(10) is State.SUCCEEDED
    flow.cancel()


def test_a_mixed_up_callback_is_ignored_through_the_cli(
    tmp_path: Path, emulator: OAuthEmulator
) -> None:
    cfg = write_config(
        tmp_path / "p.yaml",
        f"""
        providers:
          emu:
            client_id: loopauth-demo
            authorization_endpoint: {emulator.url}/authorize
            token_endpoint: {emulator.url}/token
    """,
    )
    forged: list[int] = []

    def mixed_up(url: str) -> None:
        query = parse_qs(urlsplit(url).query)
        callback = f"{query['redirect_uri'][0]}?state={query['state'][0]}&code=stolen"
        forged.append(browse(f"{callback}&iss={quote('https://evil.example')}").status)

    result = login("--config", str(cfg), "login", before=mixed_up)
    assert forged == [400]
    assert result.returncode == 0, result.stderr
    assert "ignored a redirect naming another server" in result.stderr
    assert [c["grant_type"] for c in emulator.token_calls] == ["authorization_code"]


# -- 7. Terminal escapes from the provider --------------------------------------------------

HOSTILE = "\x1b]52;c;cHduZWQ=\x07\x1b]0;pwned\x07\x1b[2J\x9b31m\u202e"


def test_provider_text_never_reaches_the_terminal_raw(tmp_path: Path) -> None:
    user = EmulatorUser("eve-1", f"Eve{HOSTILE}", f"eve{HOSTILE}@example.test")
    with OAuthEmulator(users=[user]) as emu:
        cfg = emu_config(tmp_path / "p.yaml", emu)
        outputs = [login("--config", str(cfg), "login")]
        outputs.append(cli("--config", str(cfg), "status"))
        outputs.append(cli("-v", "--config", str(cfg), "refresh"))
        status = cli("--config", str(cfg), "status", "--json")
        assert HOSTILE in json.loads(status.stdout)[0]["account_label"]  # escaped, not lost

        def forged_error(url: str) -> None:
            state = parse_qs(urlsplit(url).query)["state"][0]
            redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]
            browse(
                f"{redirect}?state={state}&iss={quote(emu.url)}&error=access_denied"
                f"&error_description=x{quote(HOSTILE)}"
            )

        denied = login("--config", str(cfg), "login", decision=None, before=forged_error)
        assert denied.returncode == 3
        outputs.append(denied)
    for out in [*outputs, status]:
        text = out.stdout + out.stderr
        assert not any(c in text for c in "\x1b\x07\x9b\u202e"), text
    assert "\\x1b]52;c;cHduZWQ=\\x07" in outputs[0].stderr  # shown, not obeyed


def test_seller_and_shop_names_never_reach_the_terminal_raw(tmp_path: Path) -> None:
    from loopauth.plugins.tiktok_shop.emulator import (
        SELLER_OPEN_ID,
        Seller,
        TikTokShopEmulator,
        tiktok_config,
    )
    from loopauth.testing import free_port

    shop = {
        "cipher": "c1",
        "code": "C1",
        "id": "1",
        "name": f"Shop{HOSTILE}",
        "region": "GB",
        "seller_type": "LOCAL",
    }
    port = free_port()
    seller = Seller(SELLER_OPEN_ID, f"Seller{HOSTILE}", "GB", 0, [shop])
    with TikTokShopEmulator(redirect_url=f"http://localhost:{port}/", sellers=[seller]) as emu:
        cfg = tiktok_config(tmp_path / "t.yaml", emu.url, port)
        env = {"TIKTOK_APP_SECRET": "demo-app-secret"}
        outputs = [login("--config", str(cfg), "login", env=env)]
        assert outputs[0].returncode == 0, outputs[0].stderr
        for args in (["status"], ["shops"], ["shops", "--json"], ["-v", "refresh"]):
            outputs.append(cli("--config", str(cfg), *args, env=env))
            assert outputs[-1].returncode == 0, outputs[-1].stderr
    for out in outputs:
        text = out.stdout + out.stderr
        assert not any(c in text for c in "\x1b\x07\x9b\u202e"), text
    assert json.loads(outputs[3].stdout)[0]["name"] == f"Shop{HOSTILE}"  # escaped JSON, intact
    assert "Shop\\x1b]52;c;" in outputs[2].stdout


# -- 8. Smaller ones ----------------------------------------------------------------------


def test_provider_names_match_their_pattern_as_a_whole() -> None:
    from loopauth.config import parse

    text = 'providers:\n  "abc\\n":\n    client_id: x\n    issuer: https://x.example\n'
    with pytest.raises(ConfigError, match="provider names use letters"):
        parse(text).select("abc\n")


def test_a_config_error_never_echoes_a_substituted_value(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "p.yaml",
        """
        providers:
          a:
            client_id: x
            authorization_endpoint: ${AUTH_URL}
            token_endpoint: https://ok.example/token
          b:
            client_id: x
            authorization_endpoint: https://ok.example/a
            token_endpoint: ${TOKEN_URL}
    """,
    )
    env = {"AUTH_URL": "http://secret-host.example/a", "TOKEN_URL": "https://h:99999999secret/"}
    for name in ("a", "b"):
        out = cli("--config", str(cfg), "token", name, env=env)
        assert out.returncode == 2 and "secret" not in out.stderr, out.stderr
        assert "'${AUTH_URL}' must use https" in out.stderr or (
            "'${TOKEN_URL}' is not a valid URL" in out.stderr
        )


def test_an_oversized_or_node_heavy_providers_yaml_is_refused_cheaply(tmp_path: Path) -> None:
    from loopauth.config import MAX_BYTES, parse

    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * MAX_BYTES + "\n")
    out = cli("--config", str(big), "providers")
    assert out.returncode == 2 and "is larger than 1024 KiB; refused" in out.stderr
    flow_list = "providers: [" + "a," * (MAX_BYTES // 2 - 20) + "a]\n"
    assert len(flow_list) <= MAX_BYTES
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match="more than 20000 YAML nodes"):
            parse(flow_list, "flow.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak  # stopped while composing, not after half a million nodes


def test_the_emulator_on_a_busy_port_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = cli("emulator", "--port", str(port), timeout=20)
    assert out.returncode == 2, out.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr and "another program" in out.stderr
    assert "internal error" not in out.stderr
