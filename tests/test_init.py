"""`loopauth init [TYPE]` and the provider types `loopauth providers` lists, driven as a user."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from loopauth.emulator import OAuthEmulator
from loopauth.testing import cli, login

BUILTIN_TYPES = ("github", "google", "microsoft", "oauth2", "tiktok_shop")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def user_config(tmp_path: Path) -> Path:
    return tmp_path / "xdg-config" / "loopauth" / "providers.yaml"


def test_providers_lists_every_type_with_a_description_before_any_config(tmp_path: Path) -> None:
    out = cli("providers")
    assert out.returncode == 0, out.stderr
    assert "no providers.yaml yet" in out.stdout and "loopauth init TYPE" in out.stdout
    section = out.stdout.split("provider types")[1].split("installed plugins:")[0]
    for name in BUILTIN_TYPES:
        line = next(line for line in section.splitlines() if line.split()[:1] == [name])
        assert len(line.split(None, 1)[1]) > 10  # a real one-line description
    listing = json.loads(cli("providers", "--json").stdout)
    assert listing["config"] is None and listing["providers"] == []
    assert set(BUILTIN_TYPES) <= set(listing["provider_types"])
    assert all(listing["provider_types"][name] for name in BUILTIN_TYPES)


def test_init_without_a_type_names_the_types(tmp_path: Path) -> None:
    out = cli("init")
    assert out.returncode == 2
    assert all(name in out.stderr for name in BUILTIN_TYPES)
    wrong = cli("init", "gitlab")
    assert wrong.returncode == 2 and "no provider type named 'gitlab'" in wrong.stderr
    assert not user_config(tmp_path).exists()


def test_init_asks_for_non_secrets_writes_references_for_secrets_and_logs_in(
    tmp_path: Path, emulator: OAuthEmulator
) -> None:
    # The answers a user types: issuer, client id, scope. Nothing is asked for the secret.
    answers = f"{emulator.url}\nloopauth-demo\nopenid email\n"
    out = cli("init", "oauth2", "--name", "emu", input=answers)
    assert out.returncode == 0, out.stderr
    path = user_config(tmp_path)
    assert f"Added provider emu (plugin oauth2) to {path}" in out.stderr
    assert "client_secret" not in out.stderr  # never asked for, never shown
    text = path.read_text()
    assert f"issuer: {emulator.url}" in text and "client_id: loopauth-demo" in text
    assert "scope: [openid, email]" in text
    assert re.search(r"^\s+# issuer URL", text, re.M)  # commented
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    # The file it wrote is the one loopauth uses: a whole login with it works.
    done = login("login", "emu")
    assert done.returncode == 0, done.stderr
    token = cli("token", "emu")
    assert token.returncode == 0 and token.stdout.strip()


def test_init_with_defaults_leaves_secrets_to_the_environment(tmp_path: Path) -> None:
    out = cli("init", "tiktok_shop", "--yes")
    assert out.returncode == 0, out.stderr
    text = user_config(tmp_path).read_text()
    assert "client_secret: ${TIKTOK_SHOP_CLIENT_SECRET}" in text
    assert "Before logging in, set: TIKTOK_SHOP_CLIENT_ID, TIKTOK_SHOP_CLIENT_SECRET" in out.stderr
    listing = cli("providers")
    assert listing.returncode == 0, listing.stderr
    assert "tiktok-shop: plugin tiktok_shop; not ready: set TIKTOK_SHOP_CLIENT_ID" in (
        listing.stdout
    )
    # Twice the same name: refused, file unchanged.
    again = cli("init", "tiktok_shop", "--yes")
    assert again.returncode == 2 and "already has a provider named 'tiktok-shop'" in again.stderr
    assert user_config(tmp_path).read_text() == text


def test_init_inserts_into_the_providers_mapping_of_an_existing_file(
    tmp_path: Path, emulator: OAuthEmulator
) -> None:
    cfg = tmp_path / "mine.yaml"
    original = (
        "# my providers\n"
        "providers:\n"
        "    emu:   # four-space indentation, kept\n"
        "        plugin: oauth2\n"
        f"        issuer: {emulator.url}\n"
        "        client_id: loopauth-demo\n"
        "    # a comment at the end of the mapping\n"
        "default: emu\n"
    )
    cfg.write_text(original)
    out = cli("--config", str(cfg), "init", "oauth2", "--name", "other", input="\n\n\n")
    assert out.returncode == 0, out.stderr
    text = cfg.read_text()
    assert text.startswith(original.split("default:")[0])  # everything before it untouched
    assert text.endswith("default: emu\n")
    assert "\n    other:\n        plugin: oauth2\n" in text
    assert "issuer: ${OTHER_ISSUER}" in text
    listing = cli("--config", str(cfg), "providers")
    assert listing.returncode == 0, listing.stderr
    assert "emu (default): plugin oauth2" in listing.stdout
    assert "other: plugin oauth2; not ready: set OTHER_ISSUER, OTHER_CLIENT_ID" in listing.stdout


def test_a_bad_answer_writes_nothing(tmp_path: Path) -> None:
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(
        "providers:\n  a:\n    plugin: oauth2\n    issuer: https://id.example\n    client_id: x\n"
    )
    before = cfg.read_text()
    out = cli("--config", str(cfg), "init", "oauth2", "--name", "b", input="not a url\nx\n\n")
    assert out.returncode == 2
    assert "providers.b.issuer" in out.stderr and "Traceback" not in out.stderr
    assert cfg.read_text() == before


def test_init_in_an_unapproved_folder_file_is_refused_and_keeps_an_approval(
    tmp_path: Path,
) -> None:
    here = tmp_path / "providers.yaml"  # tests run in tmp_path: this is ./providers.yaml
    here.write_text(
        "providers:\n  a:\n    plugin: oauth2\n    issuer: https://id.example\n    client_id: x\n"
    )
    refused = cli("init", "oauth2", "--yes")
    assert refused.returncode == 2 and "not approved" in refused.stderr
    assert cli("trust").returncode == 0
    added = cli("init", "oauth2", "--name", "b", "--yes")
    assert added.returncode == 0, added.stderr
    listing = cli("providers")
    assert listing.returncode == 0, listing.stderr  # still approved: loopauth's own addition
    assert "b: plugin oauth2; not ready" in listing.stdout


def test_each_types_ready_block_in_the_docs_is_what_init_writes() -> None:
    docs = DOCS.read_text()
    for name in BUILTIN_TYPES:
        printed = cli("init", name, "--print")
        assert printed.returncode == 0, printed.stderr
        block = printed.stdout
        assert f"```yaml\nproviders:\n{block}```" in docs, f"docs/configuration.md lacks {name}"


@pytest.mark.parametrize("kind", BUILTIN_TYPES)
def test_what_init_prints_loads(tmp_path: Path, kind: str) -> None:
    cfg = tmp_path / f"{kind}.yaml"
    cfg.write_text("providers:\n" + cli("init", kind, "--print").stdout)
    listing = cli("--config", str(cfg), "providers")
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert "not ready: set" in listing.stdout  # only variables are missing


def test_a_new_file_named_by_loopauth_config_is_created_and_approved(tmp_path: Path) -> None:
    env = {"LOOPAUTH_CONFIG": "providers.yaml"}  # relative: a file in the current folder
    out = cli("init", "tiktok_shop", "--yes", env=env)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "providers.yaml").read_text().startswith("# loopauth providers")
    listing = cli("providers", env=env)  # all of it is loopauth's: approved as written
    assert listing.returncode == 0, listing.stderr
    (tmp_path / "providers.yaml").write_text(
        (tmp_path / "providers.yaml").read_text() + "# changed by someone\n"
    )
    assert "loopauth trust" in cli("providers", env=env).stderr  # a change needs approval


def test_a_secret_the_provider_can_do_without_may_stay_unset(tmp_path: Path) -> None:
    # GitHub logs in with --device without its secret; Google needs its secret.
    assert cli("init", "github", "--yes").returncode == 0
    assert cli("init", "google", "--yes").returncode == 0
    text = user_config(tmp_path).read_text()
    assert "client_secret: ${GITHUB_CLIENT_SECRET:-}" in text
    assert "client_secret: ${GOOGLE_CLIENT_SECRET}\n" in text
    listing = cli("providers", env={"GITHUB_CLIENT_ID": "Iv1.x", "GOOGLE_CLIENT_ID": "g"})
    assert listing.returncode == 0, listing.stderr
    assert "github: plugin github\n    lacks: client_secret: the browser login needs it" in (
        listing.stdout
    )
    assert "google: plugin google; not ready: set GOOGLE_CLIENT_SECRET" in listing.stdout


@pytest.mark.skipif(os.name != "posix", reason="symlinks need privileges on Windows")
def test_a_symlinked_config_is_written_where_it_points(tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    real = dotfiles / "providers.yaml"
    real.write_text(
        "providers:\n  a:\n    plugin: oauth2\n    issuer: https://id.example\n    client_id: x\n"
    )
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    out = cli("--config", str(link), "init", "tiktok_shop", "--yes")
    assert out.returncode == 0, out.stderr
    assert link.is_symlink() and "tiktok-shop:" in real.read_text()


def test_odd_files_and_layouts_are_refused_or_kept_as_they_are(tmp_path: Path) -> None:
    folder = cli("--config", str(tmp_path), "init", "oauth2", "--yes")
    assert folder.returncode == 2 and "is a folder" in folder.stderr
    crlf = tmp_path / "crlf.yaml"
    crlf.write_bytes(
        b"\xef\xbb\xbfproviders:\r\n  a:\r\n    plugin: oauth2\r\n"
        b"    issuer: https://id.example\r\n    client_id: x\r\n"
    )
    assert cli("--config", str(crlf), "init", "tiktok_shop", "--yes").returncode == 0
    data = crlf.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfproviders:\r\n") and b"tiktok-shop:\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")  # no bare newline mixed in
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text(
        "providers:\n  ? a\n  : plugin: oauth2\n    issuer: https://id.example\n    client_id: x\n"
    )
    before = explicit.read_text()
    odd = cli("--config", str(explicit), "init", "tiktok_shop", "--yes")
    assert odd.returncode == 2 and "add it by hand" in odd.stderr
    assert explicit.read_text() == before


@pytest.mark.skipif(os.name != "posix", reason="a pseudo-terminal")
def test_at_a_terminal_init_without_a_type_asks_for_one(tmp_path: Path) -> None:
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopauth", "init"],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(follower)
    try:
        # The type, then Enter for each of Microsoft's questions (tenant, client id, scope).
        os.write(leader, b"microsoft\n\n\n\n")
        _, err = proc.communicate(timeout=60)
    finally:
        os.close(leader)
    assert proc.returncode == 0, err
    assert "provider types:" in err and "microsoft" in err
    assert "plugin: microsoft" in user_config(tmp_path).read_text()
