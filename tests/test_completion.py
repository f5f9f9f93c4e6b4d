"""`loopauth completion bash|zsh|fish`: each script loads in its shell and TAB, run as the shell
runs it, lists commands, providers from providers.yaml and accounts from the store; a cached
`loopauth token` never loads argcomplete."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from loopauth.emulator import OAuthEmulator
from loopauth.store import TokenStore
from loopauth.testing import cli, login, require_program, write_config
from loopauth.token import Token

BIN = os.path.dirname(sys.executable)  # the venv's bin: its `loopauth` is the console script
LOOPAUTH = os.path.join(BIN, "loopauth")
WHY = "the completion scripts are loaded in it; .ci/run installs it"

# Loads the script as ~/.bashrc would, then calls the function it registered for `loopauth`
# the way bash's programmable completion does, for the line in $1 with the cursor at its end.
BASH_TAB = r"""
eval "$(loopauth completion bash)" || exit 1
spec=$(complete -p loopauth) || exit 1
fn=${spec##* -F }
fn=${fn%% *}
COMP_LINE=$1
COMP_POINT=${#COMP_LINE}
read -ra COMP_WORDS <<< "$COMP_LINE"
[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
"$fn" loopauth "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"""


@pytest.fixture
def env(tmp_path: Path, emulator: OAuthEmulator) -> dict[str, str]:
    """`loopauth` on PATH, a providers.yaml with two providers (emu the default), a fresh HOME."""
    config = write_config(
        tmp_path / "providers.yaml",
        f"""
        default: emu
        providers:
          emu:
            plugin: oauth2
            issuer: {emulator.url}
            client_id: loopauth-demo
            scope: openid profile email
          backup-idp:
            plugin: oauth2
            authorization_endpoint: http://127.0.0.1:9/authorize
            token_endpoint: http://127.0.0.1:9/token
            client_id: other
        """,
    )
    return {
        **os.environ,
        "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
        "LOOPAUTH_CONFIG": str(config),
        "HOME": str(tmp_path),  # zsh's compinit and fish write their caches there
    }


def bash_tab(line: str, env: dict[str, str]) -> set[str]:
    """Return what TAB at the end of `line` offers in bash (unquoted)."""
    bash = require_program("/bin/bash", WHY)
    proc = subprocess.run(
        [bash, "-c", BASH_TAB, "bash", line], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return {shlex.split(reply)[0] for reply in proc.stdout.splitlines() if reply}


def protocol_tab(line: str, env: dict[str, str], tmp_path: Path) -> tuple[list[str], str]:
    """Ask the console script for completions as the scripts do; return them and its stderr.

    The scripts send stderr to /dev/null; here it is kept, so a traceback would show.
    """
    out = tmp_path / "completions.txt"
    proc = subprocess.run(
        [LOOPAUTH],
        env={
            **env,
            "_ARGCOMPLETE": "1",
            "_ARGCOMPLETE_IFS": "\n",
            "_ARGCOMPLETE_STDOUT_FILENAME": str(out),  # instead of descriptor 8
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0 and proc.stdout == "", (proc.returncode, proc.stdout)
    return [c.strip() for c in out.read_text().split("\n") if c], proc.stderr


def import_token(env: dict[str, str], tmp_path: Path, provider: str, account: str) -> str:
    """Store a standard token response for `account` through `loopauth import`; return it."""
    access = f"access-{provider}-{account}"
    response = {"access_token": access, "token_type": "Bearer", "expires_in": 3600}
    path = tmp_path / f"{provider}-{account}.json"
    path.write_text(json.dumps(response))
    done = cli("import", provider, str(path), "--account", account, env=env)
    assert done.returncode == 0, done.stderr
    return access


def test_bash_script_loads_and_completes_commands_and_providers(env: dict[str, str]) -> None:
    commands = bash_tab("loopauth ", env)
    assert {"login", "token", "switch", "import", "completion", "emulator"} <= commands
    assert not {c for c in commands if c.startswith("-")}  # options once a `-` is typed
    assert {"--account", "--no-browser", "--help"} <= bash_tab("loopauth login -", env)
    for line in ("loopauth login ", "loopauth token ", "loopauth switch ", "loopauth import "):
        assert bash_tab(line, env) == {"emu", "backup-idp"}, line
    assert bash_tab("loopauth status b", env) == {"backup-idp"}
    assert bash_tab("loopauth completion ", env) == {"bash", "zsh", "fish"}


def test_bash_completes_account_ids_and_labels_from_the_store(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = login("login", env=env)  # a real login: the emulator's user gives id and label
    assert result.returncode == 0, result.stderr
    import_token(env, tmp_path, "emu", "work")
    import_token(env, tmp_path, "backup-idp", "ops team")
    index = TokenStore().accounts("emu")
    ((account_id, label),) = ((k, v) for k, v in index.items() if k != "work")
    assert label, index  # the emulator names its user: the label path is exercised
    expected = {account_id, label, "work"}
    assert bash_tab("loopauth token --account ", env) == expected  # the default provider's
    assert bash_tab("loopauth exec emu --account ", env) == expected
    assert bash_tab("loopauth switch emu ", env) == expected
    assert bash_tab("loopauth logout backup-idp --account ", env) == {"ops team"}
    assert bash_tab("loopauth switch backup-idp o", env) == {"ops team"}


def test_completion_reads_the_providers_yaml_config_names(
    env: dict[str, str], tmp_path: Path
) -> None:
    other = write_config(
        tmp_path / "other.yaml",
        """
        providers:
          gamma:
            plugin: oauth2
            authorization_endpoint: http://127.0.0.1:9/authorize
            token_endpoint: http://127.0.0.1:9/token
            client_id: g
        """,
    )
    assert bash_tab(f"loopauth --config {other} login ", env) == {"gamma"}
    assert bash_tab(f"loopauth login --config {other} ", env) == {"gamma"}
    assert bash_tab(f"loopauth refresh --config={other} ", env) == {"gamma"}
    import_token({**env, "LOOPAUTH_CONFIG": str(other)}, tmp_path, "gamma", "g1")
    assert bash_tab(f"loopauth --config {other} token --account ", env) == {"g1"}


def test_bad_config_or_store_completes_nothing_and_prints_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("providers: [unclosed\n")
    for config in (str(broken), str(tmp_path / "missing.yaml")):
        bad = {**env, "LOOPAUTH_CONFIG": config}
        assert protocol_tab("loopauth login ", bad, tmp_path) == ([], "")
        assert protocol_tab("loopauth token --account ", bad, tmp_path) == ([], "")
        commands, err = protocol_tab("loopauth ", bad, tmp_path)  # commands need no config
        assert "login" in commands and err == ""
    # A provider that is not configured, and one whose token folder is not a folder.
    assert protocol_tab("loopauth switch nosuch ", env, tmp_path) == ([], "")
    (Path(env["LOOPAUTH_HOME"]) / "tokens").mkdir(parents=True)
    (Path(env["LOOPAUTH_HOME"]) / "tokens" / "emu").write_text("not a folder")
    assert protocol_tab("loopauth token --account ", env, tmp_path) == ([], "")


def test_labels_with_control_characters_are_not_offered(
    env: dict[str, str], tmp_path: Path
) -> None:
    import_token(env, tmp_path, "emu", "plain")  # also caches providers.yaml's settings
    TokenStore().save(
        Token("a", provider="emu", account_id="shop-1", account_label="Shop\x1b]0;pwned\x07")
    )
    completions, err = protocol_tab("loopauth token --account ", env, tmp_path)
    assert sorted(completions) == ["plain", "shop-1"] and err == ""


def test_zsh_script_loads_and_completes_providers(env: dict[str, str]) -> None:
    zsh = require_program("/usr/bin/zsh", WHY)
    loads = "autoload -U compinit && compinit -u && source <(loopauth completion zsh)"
    proc = subprocess.run(
        [zsh, "-f", "-c", loads + " && print -r -- $_comps[loopauth]"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    function = proc.stdout.strip()
    assert function.startswith("_python_argcomplete"), proc.stdout
    # Outside an interactive line editor `_describe` can't offer anything: a stand-in prints
    # the array of `value:description` the registered function hands it.
    run = (
        'eval "$(loopauth completion zsh)"; _describe() { print -rl -- ${(P)2} }; '
        'words=(loopauth login ""); BUFFER="loopauth login "; CURSOR=${#BUFFER}; '
        f"{function}"
    )
    proc = subprocess.run(
        [zsh, "-f", "-c", "autoload -U compinit && compinit -u && " + run],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert {line.split(":")[0] for line in proc.stdout.splitlines()} == {"emu", "backup-idp"}


def test_fish_script_completes_commands_providers_and_accounts(
    env: dict[str, str], tmp_path: Path
) -> None:
    fish = require_program("/usr/bin/fish", WHY)
    import_token(env, tmp_path, "emu", "work")
    script = (
        "loopauth completion fish | source; "
        'complete -C "loopauth login "; echo ===; '
        'complete -C "loopauth sw"; echo ===; '
        'complete -C "loopauth token --account "'
    )
    proc = subprocess.run(
        [fish, "--no-config", "-c", script], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    providers, commands, accounts = (
        {line.split("\t")[0] for line in part.splitlines() if line}
        for part in proc.stdout.split("===\n")
    )
    assert providers == {"emu", "backup-idp"}
    assert commands == {"switch"}
    assert accounts == {"work"}


def test_completion_help_says_how_to_install_and_unknown_shells_are_usage_errors() -> None:
    shown = cli("completion", "--help")
    assert shown.returncode == 0
    assert 'eval "$(loopauth completion bash)"' in shown.stdout
    assert "loopauth completion fish > ~/.config/fish/completions/loopauth.fish" in shown.stdout
    assert 'eval "$(loopauth completion zsh)"' in shown.stdout
    for args in (["tcsh"], []):
        out = cli("completion", *args)
        assert out.returncode == 2 and out.stdout == ""
        assert "Traceback" not in out.stderr and "SHELL" in out.stderr
    assert "'bash', 'zsh', 'fish'" in cli("completion", "tcsh").stderr


def test_global_completion_finds_the_marker_in_the_console_scripts_module() -> None:
    """`activate-global-python-argcomplete`'s hook completes only scripts it can vouch for."""
    check = subprocess.run(
        [sys.executable, "-m", "argcomplete._check_console_script", LOOPAUTH],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr


def test_cached_token_path_does_not_import_argcomplete(env: dict[str, str], tmp_path: Path) -> None:
    access = import_token(env, tmp_path, "emu", "work")
    assert cli("token", env=env).stdout == access + "\n"  # the settings cache is written now
    # The installed console script, as the shell runs it.
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", LOOPAUTH, "token"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    modules = {
        line.split("|")[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert proc.returncode == 0 and proc.stdout == access + "\n"
    assert "loopauth.cli.fastpath" in modules and "yaml" not in modules  # the fast path ran
    assert not {m for m in modules if m.split(".")[0] == "argcomplete"}, modules
    assert "loopauth.cli.completion" not in modules
