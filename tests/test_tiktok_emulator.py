"""The TikTok Shop emulator itself: pages, redirects, switches and signed Shop API calls."""

from __future__ import annotations

import base64
import calendar
import json
import re
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from tiktok_app import KEY, SECRET, SERVICE

from loopauth.emulator import browse
from loopauth.plugins.tiktok_shop import sign
from loopauth.plugins.tiktok_shop.emulator import (
    CREATOR_AUTHORIZE_PATH,
    CREATOR_OPEN_ID,
    CREATOR_PROFILE_PATH,
    DEFAULT_SCOPES,
    PARTNER_AUTHORIZE_PATH,
    PARTNER_OPEN_ID,
    PRODUCTS_SEARCH_PATH,
    REFRESH_PATH,
    SELLER_OPEN_ID,
    SHOPS_PATH,
    TOKEN_PATH,
    TikTokShopEmulator,
    opaque_open_id,
)

REDIRECT = "http://localhost:9/cb"  # never fetched: browse stops there
BEAUTY, HOME = "GCP_XF90igAAAABh00qsWgtvOiGFNqyubMt3", "ROW_xkMbgAAAeVAQra0eZWebFQq5aIK"
PAGES = {
    "seller": f"/open/authorize?service_id={SERVICE}&state=st-1",
    "partner": f"{PARTNER_AUTHORIZE_PATH}?service_id={SERVICE}&state=st-3",
    "creator": f"{CREATOR_AUTHORIZE_PATH}?app_key={KEY}&state=st-2",
}

PAGES_BY_TYPE = ("seller", "creator", "partner")


@pytest.fixture
def emu() -> Iterator[TikTokShopEmulator]:
    with TikTokShopEmulator(
        app_key=KEY, app_secret=SECRET, service_id=SERVICE, redirect_url=REDIRECT
    ) as emulator:
        yield emulator


def redirect(emu: TikTokShopEmulator, kind: str, decision: str = "allow") -> dict[str, str]:
    """Answer an authorization page as a user would; return the redirect's parameters."""
    result = browse(emu.url + PAGES[kind], decision=decision, stop_at=REDIRECT)
    assert result.url.startswith(REDIRECT), result.body
    query = parse_qs(urlsplit(result.url).query, keep_blank_values=True)
    return {k: v[0] for k, v in query.items()}


def exchange(emu: TikTokShopEmulator, code: str) -> dict[str, Any]:
    """Exchange an authorization code as the plugin does; return the token response's data."""
    params = {
        "app_key": KEY,
        "app_secret": SECRET,
        "auth_code": code,
        "grant_type": "authorized_code",
    }
    answer = requests.get(emu.url + TOKEN_PATH, params=params, timeout=10).json()
    assert answer["code"] == 0, answer
    data: dict[str, Any] = answer["data"]
    return data


def tokens(emu: TikTokShopEmulator, kind: str = "seller") -> dict[str, Any]:
    """Log in on `kind`'s page and exchange the code."""
    return exchange(emu, redirect(emu, kind)["code"])


def refresh(emu: TikTokShopEmulator, refresh_token: str) -> dict[str, Any]:
    """Call token/refresh as the plugin does."""
    params = {
        "app_key": KEY,
        "app_secret": SECRET,
        "refresh_token": refresh_token,
        "grant_type": "refresh_token",
    }
    answer: dict[str, Any] = requests.get(emu.url + REFRESH_PATH, params=params, timeout=10).json()
    return answer


def call(
    emu: TikTokShopEmulator,
    path: str,
    token: str,
    params: dict[str, str] | None = None,
    body: bytes | None = None,
    *,
    timestamp: int | None = None,
    sent_body: bytes | None = None,
) -> requests.Response:
    """A signed Shop API call (POST when there is a body); `sent_body` replaces it after signing."""
    stamp = int(time.time()) if timestamp is None else timestamp
    query = {"app_key": KEY, "timestamp": str(stamp), **(params or {})}
    query["sign"] = sign(SECRET, path, query, body)
    url = f"{emu.url}{path}?{urlencode(query)}"
    headers = {"x-tts-access-token": token, "content-type": "application/json"}
    if body is None:
        return requests.get(url, headers=headers, timeout=10)
    data = body if sent_body is None else sent_body
    return requests.post(url, data=data, headers=headers, timeout=10)


def search(
    emu: TikTokShopEmulator, token: str, body: bytes = b'{"status": "ALL"}', **params: str
) -> requests.Response:
    return call(emu, PRODUCTS_SEARCH_PATH, token, params, body)


def on_second_start() -> None:
    """Wait for early in a second, so an integer timestamp lags the clock by under 0.5 s."""
    fraction = time.time() % 1
    if fraction > 0.4:
        time.sleep(1.02 - fraction)


# -- accounts and authorization pages -------------------------------------------------------


def test_open_ids_are_opaque_and_stable(emu: TikTokShopEmulator) -> None:
    ids = [SELLER_OPEN_ID, CREATOR_OPEN_ID, PARTNER_OPEN_ID]
    for open_id in ids:
        assert re.fullmatch(r"_VIz[A-Za-z0-9_-]{36}", open_id) and not open_id.isdigit()
    assert len(set(ids)) == 3 and opaque_open_id("seller") == SELLER_OPEN_ID
    data = tokens(emu)
    assert data["open_id"] == SELLER_OPEN_ID and data["user_type"] == 0
    assert data["seller_name"] == "Jjj test shop" and data["seller_base_region"] == "GB"


def test_seller_redirect_carries_app_key_locale_and_region(emu: TikTokShopEmulator) -> None:
    page = requests.get(emu.url + PAGES["seller"], timeout=10).text
    assert "Jjj test shop" in page and "Acme Partner Agency" not in page
    assert CREATOR_OPEN_ID not in page
    params = redirect(emu, "seller")
    assert set(params) == {"app_key", "code", "locale", "shop_region", "state"}
    assert (params["app_key"], params["locale"], params["shop_region"]) == (KEY, "en-GB", "GB")
    assert params["state"] == "st-1" and params["code"] not in ("", "null")


def test_deny_sends_code_null(emu: TikTokShopEmulator) -> None:
    for kind in ("seller", "creator", "partner"):
        params = redirect(emu, kind, decision="deny")
        assert params["code"] == "null" and params["error"] == "auth_denied"
        assert params["state"] == PAGES[kind].rsplit("state=", 1)[1]
    assert emu.token_calls == []


def test_partner_page_lists_partners_and_grants_user_type_3(emu: TikTokShopEmulator) -> None:
    page = requests.get(emu.url + PAGES["partner"], timeout=10).text
    assert "Acme Partner Agency" in page and "Jjj test shop" not in page
    params = redirect(emu, "partner")
    assert params["app_key"] == KEY and params["shop_region"] == ""
    data = tokens(emu, "partner")
    assert (data["open_id"], data["user_type"]) == (PARTNER_OPEN_ID, 3)
    assert data["seller_name"] == "Acme Partner Agency" and "seller_base_region" not in data
    unknown = requests.get(emu.url + PARTNER_AUTHORIZE_PATH + "?service_id=1", timeout=10)
    assert "This service does not exist" in unknown.text and "<form" not in unknown.text


def test_creator_page_needs_the_app_key_and_a_state(emu: TikTokShopEmulator) -> None:
    for query, problem in [
        (f"app_key={KEY}", "missing its state"),
        (f"app_key={KEY}&state=", "missing its state"),
        ("app_key=other&state=s", "app_key"),
        (f"service_id={SERVICE}&state=s", "app_key"),
    ]:
        result = browse(f"{emu.url}{CREATOR_AUTHORIZE_PATH}?{query}", stop_at=REDIRECT)
        assert problem in result.body and result.hops == [], query
        assert "<form" not in result.body
    data = tokens(emu, "creator")
    assert (data["open_id"], data["user_type"], data["seller_name"]) == (CREATOR_OPEN_ID, 1, None)
    assert "seller_base_region" not in data
    assert data["granted_scopes"] == DEFAULT_SCOPES[1]  # every box is ticked by default
    params = redirect(emu, "creator")
    assert (params["app_key"], params["shop_region"], params["state"]) == (KEY, "", "st-2")


def test_a_creator_may_grant_only_some_scopes(emu: TikTokShopEmulator) -> None:
    kept, dropped = DEFAULT_SCOPES[1][0], DEFAULT_SCOPES[1][1:]
    emu.creator_scopes_denied = set(dropped)
    page = requests.get(emu.url + PAGES["creator"], timeout=10).text
    assert page.count('type="checkbox"') == len(DEFAULT_SCOPES[1]) and page.count(" checked") == 1
    assert tokens(emu, "creator")["granted_scopes"] == [kept]
    # Posting the form by hand: the ticked scopes (and unknown ones ignored) are granted.
    form = {"app_key": KEY, "state": "s", "account": CREATOR_OPEN_ID, "decision": "authorize"}
    answer = requests.post(
        emu.url + CREATOR_AUTHORIZE_PATH,
        data=[*form.items(), ("scope", dropped[0]), ("scope", "made.up")],
        allow_redirects=False,
        timeout=10,
    )
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    assert exchange(emu, code)["granted_scopes"] == [dropped[0]]
    none = requests.post(emu.url + CREATOR_AUTHORIZE_PATH, data=form, timeout=10)
    assert "Select at least one permission" in none.text and none.history == []


def test_a_page_accepts_only_its_own_kind_of_account(emu: TikTokShopEmulator) -> None:
    form = {"service_id": SERVICE, "state": "s", "account": CREATOR_OPEN_ID}
    answer = requests.post(
        emu.url + "/open/authorize", data={**form, "decision": "authorize"}, timeout=10
    )
    assert "Choose an account" in answer.text and answer.history == []


# -- the timestamp window and the clock -------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(-29, True), (-31, False), (299, True), (301, False)],
    ids=["29s-ahead", "31s-ahead", "299s-back", "301s-back"],
)
def test_timestamp_window(emu: TikTokShopEmulator, offset: float, accepted: bool) -> None:
    """Our timestamp is `-offset` seconds off TikTok's clock: 30 s ahead and 300 s back are ok."""
    token = tokens(emu)["access_token"]
    emu.clock_offset = offset
    on_second_start()
    resp = call(emu, SHOPS_PATH, token)
    body = resp.json()
    if accepted:
        assert (resp.status_code, body["code"]) == (200, 0), body
    else:
        assert (resp.status_code, body["code"]) == (400, 36009004)
        assert "Invalid timestamp" in body["message"] and "window" in body["message"]


def test_date_header_and_request_id_follow_the_clock(emu: TikTokShopEmulator) -> None:
    emu.clock_offset = 3600.0
    for resp in (
        requests.get(emu.url + PAGES["seller"], timeout=10),
        requests.get(emu.url + SHOPS_PATH, timeout=10),
    ):
        skew = parsedate_to_datetime(resp.headers["Date"]).timestamp() - time.time()
        assert 3590 < skew < 3610, resp.headers["Date"]
    request_id = requests.get(emu.url + SHOPS_PATH, timeout=10).json()["request_id"]
    assert re.fullmatch(r"\d{14}[0-9a-f]{20}", request_id)
    stamped = calendar.timegm(time.strptime(request_id[:14], "%Y%m%d%H%M%S"))
    assert abs(stamped - (time.time() + 3600)) < 10


def test_app_key_and_bad_timestamps_are_36009004(emu: TikTokShopEmulator) -> None:
    token = tokens(emu)["access_token"]
    query = {"app_key": "other", "timestamp": str(int(time.time()))}
    query["sign"] = sign(SECRET, SHOPS_PATH, query)
    body = requests.get(emu.url + SHOPS_PATH, params=query, timeout=10).json()
    assert body["code"] == 36009004 and "app_key" in body["message"]
    for stamp in (int(time.time() * 1000), 0):
        body = call(emu, SHOPS_PATH, token, timestamp=stamp).json()
        assert body["code"] == 36009004 and "timestamp" in body["message"]


# -- switches --------------------------------------------------------------------------------


def test_rate_limit_switch(emu: TikTokShopEmulator) -> None:
    token = tokens(emu)["access_token"]
    emu.rate_limit_next(2, retry_after=7)
    for _ in range(2):
        resp = call(emu, SHOPS_PATH, token)
        assert (resp.status_code, resp.json()["code"]) == (429, 36009002)
        assert resp.headers["Retry-After"] == "7" and "Too many" in resp.json()["message"]
    assert call(emu, SHOPS_PATH, token).json()["code"] == 0
    emu.rate_limit_next(1)
    resp = search(emu, token, page_size="5", shop_cipher=BEAUTY)  # any Shop API path
    assert resp.status_code == 429 and "Retry-After" not in resp.headers
    assert search(emu, token, page_size="5", shop_cipher=BEAUTY).json()["code"] == 0


def test_fail_next_switch(emu: TikTokShopEmulator) -> None:
    token = tokens(emu)["access_token"]
    emu.fail_next(2)
    ids = set()
    for _ in range(2):
        resp = call(emu, SHOPS_PATH, token)
        body = resp.json()
        assert (resp.status_code, body["code"], body["message"]) == (
            500,
            36009003,
            "Internal error",
        )
        ids.add(body["request_id"])
    assert len(ids) == 2
    emu.fail_next(1, status=503, code=36009099)
    resp = call(emu, SHOPS_PATH, token)
    assert (resp.status_code, resp.json()["code"]) == (503, 36009099)
    assert call(emu, SHOPS_PATH, token).json()["code"] == 0


def test_a_bad_signature_does_not_use_up_a_switch(emu: TikTokShopEmulator) -> None:
    token = tokens(emu)["access_token"]
    emu.rate_limit_next(1)
    query = {"app_key": KEY, "timestamp": str(int(time.time())), "sign": "0" * 64}
    bad = requests.get(emu.url + SHOPS_PATH, params=query, timeout=10)
    assert (bad.status_code, bad.json()["code"], bad.json()["data"]) == (401, 106001, None)
    assert call(emu, SHOPS_PATH, token).status_code == 429


def test_revoke_authorization_is_105001_and_refresh_36004005(emu: TikTokShopEmulator) -> None:
    seller, creator = tokens(emu), tokens(emu, "creator")
    emu.revoke_authorization(SELLER_OPEN_ID)
    resp = call(emu, SHOPS_PATH, seller["access_token"])
    assert (resp.status_code, resp.json()["code"]) == (401, 105001)
    assert "deauthorized" in resp.json()["message"]
    assert refresh(emu, seller["refresh_token"])["code"] == 36004005
    assert call(emu, CREATOR_PROFILE_PATH, creator["access_token"]).json()["code"] == 0
    assert refresh(emu, creator["refresh_token"])["code"] == 0
    again = tokens(emu)  # authorizing anew works
    assert call(emu, SHOPS_PATH, again["access_token"]).json()["code"] == 0
    emu.revoke_authorization()
    assert call(emu, CREATOR_PROFILE_PATH, creator["access_token"]).json()["code"] == 105001
    assert call(emu, SHOPS_PATH, again["access_token"]).json()["code"] == 105001


def test_unknown_and_expired_access_tokens(emu: TikTokShopEmulator) -> None:
    token = tokens(emu)["access_token"]
    resp = call(emu, SHOPS_PATH, "ROW_not-a-token")
    assert (resp.status_code, resp.json()["code"]) == (401, 36009004)
    assert "access token" in resp.json()["message"]
    emu.expire_access_tokens()
    assert call(emu, SHOPS_PATH, token).json()["code"] == 105002


# -- endpoints -------------------------------------------------------------------------------


def test_products_search_pages_through_a_shop(emu: TikTokShopEmulator) -> None:
    token = tokens(emu)["access_token"]
    seen: list[dict[str, Any]] = []
    page_token = ""
    for expected in (10, 10, 5):
        resp = search(emu, token, page_size="10", page_token=page_token, shop_cipher=BEAUTY)
        data = resp.json()["data"]
        assert resp.json()["message"] == "Success" and data["total_count"] == 25
        assert len(data["products"]) == expected
        seen += data["products"]
        page_token = data["next_page_token"]
    assert page_token == ""  # the last page
    assert len({p["id"] for p in seen}) == 25 and all(p["id"].isdigit() for p in seen)
    assert {"id", "title", "status"} <= set(seen[0])
    # Deterministic, and each shop has its own products.
    first = search(emu, token, page_size="10", shop_cipher=BEAUTY).json()["data"]["products"]
    other = search(emu, token, page_size="10", shop_cipher=HOME).json()["data"]["products"]
    assert first == seen[:10] and {p["id"] for p in other}.isdisjoint(p["id"] for p in seen)
    # The body filters, and the empty body means every product.
    live = search(emu, token, b'{"status":"ACTIVATE"}', page_size="100", shop_cipher=BEAUTY)
    assert live.json()["data"]["total_count"] == 20
    everything = search(emu, token, b"", page_size="100", shop_cipher=BEAUTY).json()["data"]
    assert everything["total_count"] == 25 and everything["next_page_token"] == ""
    assert emu.api_calls[0]["params"] == [
        "app_key",
        "page_size",
        "page_token",
        "shop_cipher",
        "sign",
        "timestamp",
    ]


def test_products_search_signs_the_exact_body(emu: TikTokShopEmulator) -> None:
    token = tokens(emu)["access_token"]
    params = {"page_size": "5", "shop_cipher": BEAUTY}
    signed = b'{"status":"ALL"}'
    ok = call(emu, PRODUCTS_SEARCH_PATH, token, params, signed)
    assert ok.json()["code"] == 0
    for sent in (b'{"status": "ALL"}', b"", signed + b" "):  # re-serialised, dropped, padded
        resp = call(emu, PRODUCTS_SEARCH_PATH, token, params, signed, sent_body=sent)
        assert (resp.status_code, resp.json()["code"]) == (401, 106001), sent
    assert [c["sign_valid"] for c in emu.api_calls] == [True, False, False, False]


@pytest.mark.parametrize(
    ("params", "body", "problem"),
    [
        ({"page_size": "5"}, b"{}", "Invalid shop_cipher"),
        ({"page_size": "5", "shop_cipher": "GCP_someone_else"}, b"{}", "Invalid shop_cipher"),
        ({"shop_cipher": BEAUTY}, b"{}", "Invalid page_size"),
        ({"page_size": "0", "shop_cipher": BEAUTY}, b"{}", "Invalid page_size"),
        ({"page_size": "101", "shop_cipher": BEAUTY}, b"{}", "Invalid page_size"),
        ({"page_size": "-1", "shop_cipher": BEAUTY}, b"{}", "Invalid page_size"),
        ({"page_size": "5", "shop_cipher": BEAUTY}, b"[]", "Invalid request body"),
        ({"page_size": "5", "shop_cipher": BEAUTY}, b"{status", "Invalid request body"),
        ({"page_size": "5", "shop_cipher": BEAUTY}, b'{"status":"SOLD"}', "Invalid request body"),
        ({"page_size": "5", "shop_cipher": BEAUTY, "page_token": "xyz"}, b"{}", "page_token"),
    ],
)
def test_products_search_refuses_bad_parameters(
    emu: TikTokShopEmulator, params: dict[str, str], body: bytes, problem: str
) -> None:
    token = tokens(emu)["access_token"]
    resp = call(emu, PRODUCTS_SEARCH_PATH, token, params, body)
    assert (resp.status_code, resp.json()["code"]) == (400, 36009004)
    assert problem in resp.json()["message"]


def test_page_tokens_are_bound_to_their_shop_and_filter(emu: TikTokShopEmulator) -> None:
    token = tokens(emu)["access_token"]
    page_token = search(emu, token, page_size="10", shop_cipher=BEAUTY).json()["data"][
        "next_page_token"
    ]
    assert page_token and not page_token.isdigit()  # opaque
    raw = base64.urlsafe_b64decode(page_token + "=" * (-len(page_token) % 4))
    forged = base64.urlsafe_b64encode(raw.replace(b"10:", b"20:", 1)).decode().rstrip("=")
    for kwargs in (
        {"shop_cipher": HOME, "page_token": page_token},  # another shop's token
        {"shop_cipher": BEAUTY, "page_token": forged},  # tampered offset
    ):
        resp = search(emu, token, page_size="10", **kwargs)
        assert resp.json()["code"] == 36009004 and "page_token" in resp.json()["message"]
    other_filter = search(
        emu, token, b'{"status":"DRAFT"}', page_size="10", shop_cipher=BEAUTY, page_token=page_token
    )
    assert "page_token" in other_filter.json()["message"]


def test_user_types_are_kept_apart_with_101000(emu: TikTokShopEmulator) -> None:
    seller, creator, partner = (tokens(emu, k)["access_token"] for k in PAGES_BY_TYPE)
    for resp in (
        call(emu, SHOPS_PATH, creator),
        search(emu, creator, page_size="5", shop_cipher=BEAUTY),
        call(emu, CREATOR_PROFILE_PATH, seller),
        call(emu, CREATOR_PROFILE_PATH, partner),
    ):
        assert resp.json()["code"] == 101000, resp.json()
        assert "not available for this user type" in resp.json()["message"]
    profile = call(emu, CREATOR_PROFILE_PATH, creator).json()["data"]
    assert profile == {"open_id": CREATOR_OPEN_ID, "nickname": "Ada Creates"}
    shops = call(emu, SHOPS_PATH, seller).json()["data"]["shops"]
    assert [s["cipher"] for s in shops] == [BEAUTY, HOME]
    assert call(emu, SHOPS_PATH, partner).json() | {"request_id": ""} == {
        "code": 0,
        "message": "Success",
        "data": {"shops": []},
        "request_id": "",
    }


def test_api_calls_record_no_secrets(emu: TikTokShopEmulator) -> None:
    data = tokens(emu)
    call(emu, SHOPS_PATH, data["access_token"])
    search(emu, data["access_token"], page_size="3", shop_cipher=BEAUTY)
    [shops, products] = emu.api_calls
    assert (shops["method"], shops["path"], shops["code"], shops["status"]) == (
        "GET",
        SHOPS_PATH,
        0,
        200,
    )
    assert products["method"] == "POST" and products["sign_valid"] is True
    assert shops["time"] <= products["time"] <= time.monotonic()
    text = json.dumps(emu.api_calls)
    assert data["access_token"] not in text and SECRET not in text and BEAUTY not in text
    assert not re.search(r"[0-9a-f]{64}", text)  # no signature
