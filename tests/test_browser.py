"""End to end in a real browser: Chromium (driven by Playwright) plays the user against the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from loopauth.emulator import OAuthEmulator
from loopauth.plugins.tiktok_shop.emulator import TikTokShopEmulator, tiktok_config
from loopauth.testing import free_port, write_config

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[object]:
    try:
        import playwright.sync_api as playwright
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true and Playwright is not installed (pip install -e '.[test]')")
        pytest.skip("Playwright is not installed (pip install -e '.[test]')")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class Run:
    returncode: int
    stderr: str
    landing_status: int
    landing_url: str
    landing_headers: dict[str, str]
    text: str
    requests: list[tuple[str, str]] = field(default_factory=list)


def run_login(
    browser: object,
    cfg: Path,
    provider: str,
    button: str,
    shot: str | None,
    env: dict[str, str] | None = None,
) -> Run:
    """`loopauth login --no-browser`, with Chromium opening the URL and clicking `button`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopauth", "--config", str(cfg), "login", provider, "--no-browser"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stderr is not None
    lines: list[str] = []
    url = ""
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("http"):
            url = line.strip()
            break
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    requests: list[tuple[str, str]] = []
    page.on("request", lambda r: requests.append((r.resource_type, r.url)))
    page.goto(url)
    with page.expect_response(
        lambda r: (
            (urlsplit(r.url).hostname in ("localhost", "127.0.0.1") and "code=" in r.url)
            or "error=" in r.url
        )
    ) as landing:
        page.get_by_role("button", name=button).click()
    page.wait_for_load_state("load")
    response = landing.value
    if shot:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)
    text = page.inner_text("body")
    lines.extend(proc.stderr)
    code = proc.wait(30)
    context.close()
    return Run(
        code,
        "".join(lines),
        response.status,
        response.url,
        {k.lower(): v for k, v in response.headers.items()},
        text,
        requests,
    )


def check_landing_page(run: Run) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert run.landing_headers.get(name) == value, name
    csp = run.landing_headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    origin = run.landing_url.split("/", 3)[:3]
    after = run.requests[[u for _, u in run.requests].index(run.landing_url) :]
    assert [kind for kind, _ in after] == ["document"], after  # the page loads nothing at all
    assert all(u.split("/", 3)[:3] == origin for _, u in after)


@pytest.fixture
def oauth2(tmp_path: Path) -> Iterator[tuple[OAuthEmulator, Path]]:
    with OAuthEmulator() as emu:
        yield (
            emu,
            write_config(
                tmp_path / "p.yaml",
                f"""
            providers:
              emulator:
                issuer: {emu.url}
                client_id: loopauth-demo
                scope: openid profile email
        """,
            ),
        )


@pytest.fixture
def tiktok(tmp_path: Path) -> Iterator[tuple[TikTokShopEmulator, Path]]:
    port = free_port()
    with TikTokShopEmulator(redirect_url=f"http://localhost:{port}/") as emu:
        yield emu, tiktok_config(tmp_path / "t.yaml", emu.url, port)


TIKTOK_ENV = {"TIKTOK_APP_SECRET": "demo-app-secret"}


def test_oauth2_allow_in_chromium(browser: object, oauth2: tuple[OAuthEmulator, Path]) -> None:
    _emu, cfg = oauth2
    run = run_login(browser, cfg, "emulator", "Allow", "oauth2-success")
    assert run.returncode == 0, run.stderr
    assert run.landing_status == 200
    assert "You're signed in" in run.text
    assert "emulator" in run.text and "ada@example.test" in run.text
    check_landing_page(run)


def test_oauth2_deny_in_chromium(browser: object, oauth2: tuple[OAuthEmulator, Path]) -> None:
    emu, cfg = oauth2
    run = run_login(browser, cfg, "emulator", "Deny", "oauth2-denied")
    assert run.returncode == 3, run.stderr
    assert run.landing_status == 403 and "Access denied" in run.text
    assert "access_denied" in run.text
    check_landing_page(run)
    assert emu.token_calls == []


def test_tiktok_authorize_in_chromium(
    browser: object, tiktok: tuple[TikTokShopEmulator, Path]
) -> None:
    _emu, cfg = tiktok
    run = run_login(browser, cfg, "tiktok-shop", "Authorize", "tiktok-success", TIKTOK_ENV)
    assert run.returncode == 0, run.stderr
    assert "tiktok-shop" in run.text and "Jjj test shop" in run.text
    check_landing_page(run)


def test_tiktok_deny_in_chromium(browser: object, tiktok: tuple[TikTokShopEmulator, Path]) -> None:
    emu, cfg = tiktok
    run = run_login(browser, cfg, "tiktok-shop", "Deny", "tiktok-denied", TIKTOK_ENV)
    assert run.returncode == 3, run.stderr
    assert "auth_denied" in run.text
    check_landing_page(run)
    assert emu.token_calls == []


def test_second_tab_on_the_callback_does_not_exchange_again(
    browser: object, oauth2: tuple[OAuthEmulator, Path]
) -> None:
    emu, cfg = oauth2
    run = run_login(browser, cfg, "emulator", "Allow", None)
    assert run.returncode == 0
    context = browser.new_context()  # type: ignore[attr-defined]
    tab = context.new_page()
    outcome: dict[str, object] = {}
    try:
        response = tab.goto(run.landing_url, timeout=5000)
        outcome["status"] = response.status if response else None
    except Exception as exc:  # the listener is closed: the browser cannot connect at all
        outcome["error"] = str(exc).splitlines()[0]
    context.close()
    assert (
        "ERR_CONNECTION_REFUSED" in str(outcome.get("error", "")) or outcome.get("status") == 409
    ), outcome
    assert [c["grant_type"] for c in emu.token_calls] == ["authorization_code"]


def test_second_tab_while_the_first_is_exchanging(browser: object, tmp_path: Path) -> None:
    """Two tabs deliver the same redirect: one exchange; the other tab is told it's done."""
    from loopauth.config import parse
    from loopauth.emulator import browse
    from loopauth.flow import Flow, State

    with OAuthEmulator() as emu:
        provider = parse(
            f"providers:\n  e:\n    issuer: {emu.url}\n    client_id: loopauth-demo\n"
        ).select("e")
        flow = Flow(provider)
        url = flow.start()
        redirect = browse(url, stop_at=flow.redirect_uri).url
        context = browser.new_context()  # type: ignore[attr-defined]
        tabs = [context.new_page(), context.new_page()]
        statuses: list[int] = []

        def visit(tab: object) -> None:
            try:
                resp = tab.goto(redirect, timeout=10000)  # type: ignore[attr-defined]
                statuses.append(resp.status)
            except Exception:
                statuses.append(0)  # the port closed under the slower tab

        # Playwright's sync API is single-threaded: the tabs go one right after the other.
        for tab in tabs:
            visit(tab)
        context.close()
        assert flow.wait(10) is State.SUCCEEDED
        assert statuses[0] == 200 and statuses[1] in (0, 409)
        assert len(emu.token_calls) == 1


@pytest.mark.parametrize(("ci", "outcome"), [("", "skipped"), ("true", "error")])
def test_missing_chromium_skips_locally_and_fails_in_ci(
    tmp_path: Path, ci: str, outcome: str
) -> None:
    env = {**os.environ, "LOOPAUTH_CHROMIUM": str(tmp_path / "no-chromium"), "CI": ci}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{Path(__file__)}::test_oauth2_allow_in_chromium",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=Path(__file__).parent.parent,
    )
    assert f"1 {outcome}" in proc.stdout, proc.stdout[-500:]
    assert "no-chromium is not installed" in proc.stdout or outcome == "skipped"


def test_launch_page_takes_chromium_to_the_login(
    browser: object, tmp_path: Path, oauth2: tuple[OAuthEmulator, Path]
) -> None:
    """The browser gets a private local page, not the URL: Chromium follows it to the login."""
    emu, cfg = oauth2
    record = tmp_path / "argv.txt"
    script = tmp_path / "browser.py"
    script.write_text("import sys\nopen(sys.argv[2], 'w').write(sys.argv[1])\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopauth", "--config", str(cfg), "login"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "BROWSER": f"{sys.executable} {script} %s {record}"},
    )
    assert proc.stderr is not None
    url = next(line.strip() for line in proc.stderr if line.startswith("http"))
    # loopauth does not wait for the browser command: it may still be starting.
    deadline = time.monotonic() + 20
    while not (record.is_file() and record.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    launched = record.read_text()
    state = parse_qs(urlsplit(url).query)["state"][0]
    assert launched.startswith("file://") and state not in launched
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(launched)
    with page.expect_response(lambda r: "code=" in r.url):
        page.get_by_role("button", name="Allow").click()
    page.wait_for_load_state("load")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "launch-page-success.png"), full_page=True)
    text = page.inner_text("body")
    context.close()
    assert proc.wait(30) == 0, proc.stderr.read()
    assert "You're signed in" in text
    assert not Path(urlsplit(launched).path).exists()  # removed once the login ended
    assert [c["grant_type"] for c in emu.token_calls] == ["authorization_code"]
