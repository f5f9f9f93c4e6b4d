"""TikTok Shop API errors: each code's exit and hint, retries with backoff, and what is sent."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from tiktok_app import KEY, SECRET, SERVICE, make_emulator

from loopauth.errors import NoTokenError
from loopauth.plugins.tiktok_shop import TikTokShopAuth, TikTokShopError, shop_session
from loopauth.plugins.tiktok_shop import api as tiktok_api
from loopauth.plugins.tiktok_shop.emulator import (
    CREATOR_AUTHORIZE_PATH,
    CREATOR_PROFILE_PATH,
    PRODUCTS_SEARCH_PATH,
    SELLER_OPEN_ID,
    SHOPS_PATH,
    TikTokShopEmulator,
    tiktok_config,
)
from loopauth.store import TokenStore
from loopauth.testing import cli, login

ENV = {"TIKTOK_APP_SECRET": SECRET}
FAST = "    api_backoff: 0.01\n"  # retries a few milliseconds apart, so the tests stay quick
CIPHER = "GCP_XF90igAAAABh00qsWgtvOiGFNqyubMt3"


def shop_config(path: Path, emu: TikTokShopEmulator, port: int, extra: str = FAST) -> Path:
    return tiktok_config(path, emu.url, port, client_id=KEY, service_id=SERVICE, extra=extra)


@pytest.fixture
def cfg(tmp_path: Path, tiktok: TikTokShopEmulator, port: int) -> Path:
    """A seller logged in to the emulator."""
    path = shop_config(tmp_path / "providers.yaml", tiktok, port)
    result = login("--config", str(path), "login", env=ENV)
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """The App Secret for in-process Python API calls."""
    monkeypatch.setenv("TIKTOK_APP_SECRET", SECRET)


def shops(cfg: Path, env: dict[str, str] = ENV) -> tuple[int, str]:
    out = cli("--config", str(cfg), "shops", env=env)
    assert "Traceback" not in out.stderr
    return out.returncode, out.stderr


def answers(emu: TikTokShopEmulator) -> list[tuple[str, int, int | None]]:
    return [(c["method"], c["status"], c["code"]) for c in emu.api_calls]


# -- 36009004: the clock, or the App Key ------------------------------------------------------


def test_a_fast_clock_is_named_with_how_far_it_is_off(tmp_path: Path, port: int) -> None:
    # TikTok's clock 95 s behind this computer's: our timestamps are 95 s in its future.
    with make_emulator(port, clock_offset=-95) as emu:
        cfg = shop_config(tmp_path / "p.yaml", emu, port)
        assert login("--config", str(cfg), "login", env=ENV).returncode == 0
        code, err = shops(cfg)
    assert code == 5, err
    assert "TikTok Shop error 36009004" in err and "HTTP 400" in err and "request_id" in err
    assert "check this computer's clock" in err
    match = re.search(r"this computer's clock is (\d+) s ahead of TikTok's", err)
    assert match and 93 <= int(match.group(1)) <= 97, err
    assert "App Key" not in err


def test_a_slow_clock_within_tiktoks_window_is_fine(tmp_path: Path, port: int) -> None:
    with make_emulator(port, clock_offset=95) as emu:  # 95 s behind TikTok: allowed
        cfg = shop_config(tmp_path / "p.yaml", emu, port)
        assert login("--config", str(cfg), "login", env=ENV).returncode == 0
        assert shops(cfg)[0] == 0


def test_a_wrong_app_key_is_named_not_the_clock(cfg: Path) -> None:
    cfg.write_text(cfg.read_text().replace(f"client_id: {KEY}", "client_id: another-app-key"))
    code, err = shops(cfg)
    assert code == 5, err
    assert "TikTok Shop error 36009004" in err
    assert "did not accept the App Key: check client_id" in err
    assert "clock" not in err


# -- 106001: the signature only ---------------------------------------------------------------


def test_a_wrong_secret_is_106001_and_names_the_app_secret_only(cfg: Path) -> None:
    code, err = shops(cfg, env={"TIKTOK_APP_SECRET": "not-the-secret"})
    assert code == 5, err
    assert "TikTok Shop error 106001" in err and "HTTP 401" in err
    assert "check the App Secret (client_secret)" in err
    assert "clock" not in err and "not-the-secret" not in err


# -- 105001 and 105002: the token --------------------------------------------------------------


def test_a_deauthorized_app_means_log_in_again_and_is_remembered(
    cfg: Path, tiktok: TikTokShopEmulator
) -> None:
    tiktok.revoke_authorization(SELLER_OPEN_ID)
    code, err = shops(cfg)
    assert code == 6, err
    assert "TikTok Shop error 105001" in err and "log in again" in err
    assert f"run: loopauth login tiktok-shop --account {SELLER_OPEN_ID}" in err
    stored = TokenStore().find("tiktok-shop")
    assert stored.dead is not None and stored.dead.startswith("105001: ")
    calls = len(tiktok.api_calls)
    # Remembered: neither the Shop API nor the token endpoint is asked again.
    for command in ("shops", "refresh", "token"):  # `token` no longer hands the access out
        again = cli("--config", str(cfg), command, env=ENV)
        assert again.returncode == 6, again.stderr
        assert f"run: loopauth login tiktok-shop --account {SELLER_OPEN_ID}" in again.stderr
    assert len(tiktok.api_calls) == calls and tiktok.token_calls == ["/api/v2/token/get"]
    assert "dead: log in again" in cli("--config", str(cfg), "status", env=ENV).stdout
    # A new login clears it.
    assert login("--config", str(cfg), "login", env=ENV).returncode == 0
    assert shops(cfg)[0] == 0


def test_an_access_token_tiktok_expired_is_refreshed_and_the_call_retried(
    cfg: Path, tiktok: TikTokShopEmulator
) -> None:
    tiktok.expire_access_tokens()
    code, err = shops(cfg)
    assert code == 0, err
    assert answers(tiktok) == [("GET", 401, 105002), ("GET", 200, 0)]
    assert tiktok.token_calls == ["/api/v2/token/get", "/api/v2/token/refresh"]


# -- 101000: the wrong kind of account ---------------------------------------------------------


def test_a_creator_on_a_seller_api_is_named(
    tmp_path: Path, tiktok: TikTokShopEmulator, port: int
) -> None:
    cfg = tiktok_config(
        tmp_path / "c.yaml",
        tiktok.url,
        port,
        client_id=KEY,
        service_id=SERVICE,
        extra="    user_type: creator\n",
        authorize_path=CREATOR_AUTHORIZE_PATH,
    )
    assert login("--config", str(cfg), "login", env=ENV).returncode == 0
    code, err = shops(cfg)
    assert code == 5, err
    assert "TikTok Shop error 101000" in err
    assert "this API is for sellers and this account is a creator" in err


def test_a_seller_on_a_creator_api_is_named(
    cfg: Path, tiktok: TikTokShopEmulator, secret: None
) -> None:
    with pytest.raises(TikTokShopError) as info:
        shop_session(config=str(cfg)).get(CREATOR_PROFILE_PATH)
    assert info.value.code == 101000 and info.value.request_id
    assert "this API is for creators and this account is a seller" in str(info.value)
    assert info.value.response is not None and info.value.response["code"] == 101000


# -- 36009002 / 429: rate limits ---------------------------------------------------------------


def test_a_rate_limit_is_retried_after_tiktoks_retry_after(
    cfg: Path, tiktok: TikTokShopEmulator, secret: None
) -> None:
    tiktok.rate_limit_next(1, retry_after=1)
    resp = shop_session(config=str(cfg)).get(SHOPS_PATH)
    assert resp.json()["code"] == 0
    assert answers(tiktok) == [("GET", 429, 36009002), ("GET", 200, 0)]
    first, second = (c["time"] for c in tiktok.api_calls)
    assert second - first >= 1.0  # Retry-After: 1 was honoured, not the 10 ms backoff
    # Each attempt is signed again, with its own timestamp.
    stamps = [parse_qs(urlsplit(r.request.url).query)["timestamp"][0] for r in resp.history]
    stamps.append(parse_qs(urlsplit(resp.request.url).query)["timestamp"][0])
    assert int(stamps[1]) > int(stamps[0])
    assert all(c["sign_valid"] for c in tiktok.api_calls)


def test_rate_limit_backoff_is_exponential_with_full_jitter(
    cfg: Path, tiktok: TikTokShopEmulator, secret: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    real_sleep = tiktok_api._sleep

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(tiktok_api, "_sleep", sleep)
    tiktok.rate_limit_next(3)
    auth = TikTokShopAuth(config=str(cfg), backoff_base=0.1)
    session = shop_session(config=str(cfg))
    session.auth = auth
    assert session.get(SHOPS_PATH).json()["code"] == 0
    assert [a[1] for a in answers(tiktok)] == [429, 429, 429, 200]
    assert len(waits) == 3
    for attempt, wait in enumerate(waits):
        assert 0 <= wait <= 0.1 * 2**attempt
    times = [c["time"] for c in tiktok.api_calls]
    for attempt, wait in enumerate(waits):
        assert times[attempt + 1] - times[attempt] >= wait  # each retry waited its turn


def test_a_rate_limit_that_persists_ends_with_exit_5(
    tmp_path: Path, tiktok: TikTokShopEmulator, port: int
) -> None:
    cfg = shop_config(tmp_path / "p.yaml", tiktok, port, FAST + "    api_retries: 2\n")
    assert login("--config", str(cfg), "login", env=ENV).returncode == 0
    tiktok.rate_limit_next(10)
    code, err = shops(cfg)
    assert code == 5, err
    assert "TikTok Shop error 36009002" in err and "HTTP 429" in err
    assert "rate limited" in err and "gave up after 2 retries" in err
    assert [a[1] for a in answers(tiktok)] == [429, 429, 429]


def test_a_retry_after_longer_than_loopauth_waits_fails_at_once(
    cfg: Path, tiktok: TikTokShopEmulator
) -> None:
    tiktok.rate_limit_next(1, retry_after=120)
    code, err = shops(cfg)
    assert code == 5, err
    assert "rate limited" in err and "asked to wait 120 s (Retry-After)" in err
    assert len(tiktok.api_calls) == 1


def test_a_rate_limited_post_is_retried(
    cfg: Path, tiktok: TikTokShopEmulator, secret: None
) -> None:
    tiktok.rate_limit_next(1)  # a 429 was not carried out: safe to send again
    resp = shop_session(config=str(cfg)).post(
        PRODUCTS_SEARCH_PATH, params={"shop_cipher": CIPHER, "page_size": "5"}, json={}
    )
    assert resp.json()["code"] == 0
    assert answers(tiktok) == [("POST", 429, 36009002), ("POST", 200, 0)]


# -- 36009003 / 5xx: server errors ---------------------------------------------------------------


def test_a_server_error_on_get_is_retried(cfg: Path, tiktok: TikTokShopEmulator) -> None:
    tiktok.fail_next(2)
    code, err = shops(cfg)
    assert code == 0, err
    assert [a[1:] for a in answers(tiktok)] == [(500, 36009003), (500, 36009003), (200, 0)]


def test_a_server_error_that_persists_keeps_tiktoks_code_and_request_id(
    tmp_path: Path, tiktok: TikTokShopEmulator, port: int
) -> None:
    cfg = shop_config(tmp_path / "p.yaml", tiktok, port, FAST + "    api_retries: 1\n")
    assert login("--config", str(cfg), "login", env=ENV).returncode == 0
    tiktok.fail_next(5, status=503)
    code, err = shops(cfg)
    assert code == 5, err
    assert re.search(
        r"TikTok Shop error 36009003: .*\(HTTP 503, request_id \d{14}[0-9a-f]{20}\)", err
    )
    assert "gave up after 1 retry" in err
    assert len(tiktok.api_calls) == 2


def test_a_server_error_on_post_is_not_retried(
    cfg: Path, tiktok: TikTokShopEmulator, secret: None
) -> None:
    tiktok.fail_next(1)
    api = shop_session(config=str(cfg))
    params = {"shop_cipher": CIPHER, "page_size": "5"}
    with pytest.raises(TikTokShopError) as info:
        api.post(PRODUCTS_SEARCH_PATH, params=params, json={"status": "ALL"})
    assert info.value.code == 36009003 and info.value.status == 500 and info.value.request_id
    assert "not retried: a POST may have been carried out" in str(info.value)
    assert answers(tiktok) == [("POST", 500, 36009003)]
    # The next one goes through: nothing was left broken.
    resp = api.post(PRODUCTS_SEARCH_PATH, params=params, json={"status": "ALL"})
    assert resp.json()["data"]["total_count"] > 0


def test_an_answer_without_an_envelope_names_the_http_status(
    cfg: Path, tiktok: TikTokShopEmulator, secret: None
) -> None:
    from loopauth.errors import ProviderError

    with pytest.raises(ProviderError, match=r"answered HTTP 404 with something that is not a"):
        shop_session(config=str(cfg)).get("/no/such/api")


def test_a_deauthorized_post_raises_no_token_error(
    cfg: Path, tiktok: TikTokShopEmulator, secret: None
) -> None:
    tiktok.revoke_authorization()
    with pytest.raises(NoTokenError, match="run: loopauth login tiktok-shop --account") as info:
        shop_session(config=str(cfg)).post(
            PRODUCTS_SEARCH_PATH, params={"shop_cipher": CIPHER, "page_size": "5"}, json={}
        )
    cause = info.value.__cause__
    assert isinstance(cause, TikTokShopError) and cause.code == 105001


def test_raise_errors_false_returns_the_answer_and_error_for_names_it(
    cfg: Path, tiktok: TikTokShopEmulator, secret: None
) -> None:
    import requests

    tiktok.fail_next(1)
    auth = TikTokShopAuth(config=str(cfg), raise_errors=False)
    resp = requests.post(
        f"{tiktok.url}{PRODUCTS_SEARCH_PATH}",
        params={"shop_cipher": CIPHER, "page_size": "5"},
        json={},
        auth=auth,
    )
    assert (resp.status_code, resp.json()["code"]) == (500, 36009003)
    error = auth.error_for(resp)
    assert isinstance(error, TikTokShopError) and "not retried" in str(error)
    ok = requests.get(f"{tiktok.url}{SHOPS_PATH}", auth=auth)
    assert ok.json()["code"] == 0 and auth.error_for(ok) is None


# -- sign_empty_params -------------------------------------------------------------------------


@pytest.fixture
def empty_params_off(tmp_path: Path, tiktok: TikTokShopEmulator, port: int) -> Iterator[Path]:
    cfg = shop_config(tmp_path / "p.yaml", tiktok, port, FAST + "    sign_empty_params: false\n")
    assert login("--config", str(cfg), "login", env=ENV).returncode == 0
    yield cfg


@pytest.mark.usefixtures("secret")
def test_sign_empty_params_false_leaves_them_out_of_the_request(
    empty_params_off: Path, tiktok: TikTokShopEmulator
) -> None:
    resp = shop_session(config=str(empty_params_off)).get(
        SHOPS_PATH, params={"page_token": "", "x": "1"}
    )
    assert resp.json()["code"] == 0
    assert tiktok.api_calls[-1]["params"] == ["app_key", "sign", "timestamp", "x"]
    assert tiktok.api_calls[-1]["sign_valid"]


def test_empty_params_are_sent_and_signed_by_default(
    cfg: Path, tiktok: TikTokShopEmulator, secret: None
) -> None:
    resp = shop_session(config=str(cfg)).get(SHOPS_PATH, params={"page_token": ""})
    assert resp.json()["code"] == 0
    assert "page_token" in tiktok.api_calls[-1]["params"] and tiktok.api_calls[-1]["sign_valid"]


def test_the_error_table_in_the_docs_lists_every_hinted_code() -> None:
    from loopauth.plugins.tiktok_shop import HINTS

    docs = (Path(__file__).parent.parent / "docs" / "tiktok-shop.md").read_text()
    table = docs.split("## Errors and what to do", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")}
    assert {str(code) for code in HINTS} <= rows, sorted({str(c) for c in HINTS} - rows)
