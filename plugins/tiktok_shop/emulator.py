"""A local TikTok Shop that behaves as the reference says: pages, token endpoints, Shop API.

One loopback server stands in for every TikTok host, told apart by path:

- services.tiktokshop.com (and the US services.tiktokshops.us) `/open/authorize`: seller page;
- partner.tiktokshop.com `/open/authorize`: the partner page, served here under the prefix
  `/partner/open/authorize` because this emulator has a single host;
- shop.tiktok.com `/alliance/creator/auth`: the creator page;
- auth.tiktok-shops.com `/api/v2/token/get` and `/refresh`: GET-only token endpoints;
- open-api.tiktokglobalshop.com: signed Shop API calls (Get Authorized Shops, a paged product
  search, a creator profile).

Facts: ../shared/reference/tiktok-shop.md. What TikTok does not publish (HTTP statuses of
36009004 and 101000, most messages, the product and profile shapes) is this emulator's choice and
marked "ours" below.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopauth.emulator import EmulatorServer, Request, Response, page

TOKEN_PATH = "/api/v2/token/get"
REFRESH_PATH = "/api/v2/token/refresh"
AUTHORIZE_PATH = "/open/authorize"
PARTNER_AUTHORIZE_PATH = "/partner/open/authorize"
CREATOR_AUTHORIZE_PATH = "/alliance/creator/auth"
SHOPS_PATH = "/authorization/202309/shops"
PRODUCTS_SEARCH_PATH = "/product/202309/products/search"
CREATOR_PROFILE_PATH = "/affiliate_creator/202405/profiles"
TOKEN_HEADER = "x-tts-access-token"

# A timestamp is accepted from 5 minutes behind TikTok's clock to 30 seconds ahead of it.
TIMESTAMP_PAST, TIMESTAMP_FUTURE = 300, 30

SELLER_TYPE, CREATOR_TYPE, PARTNER_TYPE = 0, 1, 3  # user_type in token responses

# The scopes the emulated app holds per user type (set in Partner Center, not in the link).
# Creator and partner scope names are ours; TikTok does not list them.
DEFAULT_SCOPES: dict[int, list[str]] = {
    SELLER_TYPE: [
        "seller.authorization.info",
        "seller.product.basic",
        "seller.order.info",
        "seller.shop.info",
    ],
    CREATOR_TYPE: [
        "creator.authorization.info",
        "creator.affiliate.info",
        "creator.showcase.manage",
    ],
    PARTNER_TYPE: ["partner.authorization.info", "seller.authorization.info"],
}
PRODUCT_STATUSES = ("ACTIVATE", "DRAFT", "SELLER_DEACTIVATED")


def opaque_open_id(label: str) -> str:
    """A deterministic open_id shaped like the seed's (`_VIz...`): opaque, never numeric."""
    digest = hashlib.sha256(b"loopauth-tiktok-emulator:" + label.encode()).digest()
    return "_VIzFhkAAAB" + base64.urlsafe_b64encode(digest).decode()[:29]


SELLER_OPEN_ID = opaque_open_id("seller")
CREATOR_OPEN_ID = opaque_open_id("creator")
PARTNER_OPEN_ID = opaque_open_id("partner")


def _signature(secret: str, req: Request) -> str:
    """TikTok's documented signature, written apart from the client's `sign` on purpose."""
    signed = "".join(
        name + req.query[name] for name in sorted(req.query) if name not in ("sign", "access_token")
    )
    # The raw body bytes, as received: a client that re-serialises its JSON must fail here.
    message = secret.encode() + req.path.encode() + signed.encode() + req.body + secret.encode()
    return hmac.new(secret.encode(), message, "sha256").hexdigest()


@dataclass
class Seller:
    """An account that can authorize the app: a seller (user_type 0), creator (1) or partner (3)."""

    open_id: str
    seller_name: str | None
    seller_base_region: str | None = "GB"
    user_type: int = SELLER_TYPE
    shops: list[dict[str, str]] = field(default_factory=list)
    nickname: str | None = None  # a creator's display name (creators have no seller_name)

    @property
    def label(self) -> str:
        """How the authorization pages name the account."""
        return self.seller_name or self.nickname or self.open_id


def _default_sellers() -> list[Seller]:
    shops = [
        {
            "cipher": "GCP_XF90igAAAABh00qsWgtvOiGFNqyubMt3",
            "code": "CNGBCBA4LLU8",
            "id": "7000714532876273420",
            "name": "Maomao beauty shop",
            "region": "GB",
            "seller_type": "CROSS_BORDER",
        },
        {
            "cipher": "ROW_xkMbgAAAeVAQra0eZWebFQq5aIK",
            "code": "GBLCLSWS42",
            "id": "7000714532876273499",
            "name": "Maomao home",
            "region": "GB",
            "seller_type": "LOCAL",
        },
    ]
    return [
        Seller(SELLER_OPEN_ID, "Jjj test shop", "GB", SELLER_TYPE, shops),
        Seller(CREATOR_OPEN_ID, None, None, CREATOR_TYPE, nickname="Ada Creates"),
        Seller(PARTNER_OPEN_ID, "Acme Partner Agency", None, PARTNER_TYPE),
    ]


@dataclass
class _Grant:
    seller: Seller
    expires_at: float
    scopes: list[str]
    used: bool = False
    revoked: bool = False  # the seller deauthorized the app


# The authorization pages: the user_type each lists and the query parameter naming the app.
_PAGES = {
    AUTHORIZE_PATH: (SELLER_TYPE, "service_id"),
    PARTNER_AUTHORIZE_PATH: (PARTNER_TYPE, "service_id"),
    CREATOR_AUTHORIZE_PATH: (CREATOR_TYPE, "app_key"),
}

_Answer = Callable[[Request, _Grant], Response]


class TikTokShopEmulator(EmulatorServer):
    """TikTok Shop's authorization pages, GET-only token endpoints and signed Shop API calls.

    Switches for tests: `clock_offset` (seconds this server's clock runs ahead of the machine's;
    it drives the Date header, the timestamp window, expiry times and request_ids),
    `rate_limit_next`, `fail_next`, `revoke_authorization`, `expire_access_tokens`,
    `expire_refresh_tokens`, `revoke_refresh_tokens`. `creator_scopes_denied` names the scopes
    the creator page leaves unticked (all are ticked by default), so a scripted creator grants
    only part of the app's scopes. `api_calls` records every Shop API call, secrets left out.

    A Shop API call is checked in this order, and the first failure answers:
    app_key, timestamp window, repeated parameters, signature; then the switches (a pending
    `rate_limit_next` before a pending `fail_next`, one consumed per call, so a request TikTok
    would refuse as malformed never uses one up); then the access token (unknown 36009004,
    deauthorized 105001, expired 105002); then the user type (101000); then the endpoint's own
    parameters (shop_cipher, page_size, body, page_token).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        app_key: str = "demo-app-key",
        app_secret: str = "demo-app-secret",
        service_id: str = "7301234567890123456",
        redirect_url: str = "http://localhost:3017/",
        sellers: list[Seller] | None = None,
        access_token_lifetime: int = 7 * 86400,
        refresh_token_lifetime: int = 365 * 86400,
        rotate_refresh_tokens: bool = False,
        code_lifetime: int = 1800,
        locale: str = "en-GB",
        clock_offset: float = 0.0,
        products_per_shop: int = 25,
        creator_scopes_denied: Iterable[str] = (),
    ) -> None:
        super().__init__(host, port)
        self.app_key, self.app_secret, self.service_id = app_key, app_secret, service_id
        self.redirect_url = redirect_url
        self.sellers = list(sellers if sellers is not None else _default_sellers())
        self.access_token_lifetime = access_token_lifetime
        self.refresh_token_lifetime = refresh_token_lifetime
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.code_lifetime = code_lifetime
        self.locale = locale
        self.clock_offset = clock_offset
        self.products_per_shop = products_per_shop
        self.creator_scopes_denied = set(creator_scopes_denied)
        self.scopes = {kind: list(names) for kind, names in DEFAULT_SCOPES.items()}
        self.token_calls: list[str] = []  # the paths of token/get and token/refresh calls
        # What each token call carried, secrets left out: grant_type and the parameter names.
        self.token_requests: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []  # every token endpoint answer, as sent
        self.api_calls: list[dict[str, Any]] = []  # every Shop API call, secrets left out
        self._lock = threading.Lock()
        self._codes: dict[str, _Grant] = {}
        self._access: dict[str, _Grant] = {}
        self._refresh: dict[str, _Grant] = {}
        self._rate_limited = 0
        self._retry_after: int | None = None
        self._failures: list[tuple[int, int]] = []  # (HTTP status, envelope code) per call
        self._page_key = secrets.token_bytes(16)  # page tokens of another emulator are foreign
        self._api: dict[tuple[str, str], tuple[bool, _Answer]] = {
            ("GET", SHOPS_PATH): (False, self._shops),
            ("POST", PRODUCTS_SEARCH_PATH): (False, self._search_products),
            ("GET", CREATOR_PROFILE_PATH): (True, self._creator_profile),
        }  # (method, path) -> (is a creator API, answer)

    def __repr__(self) -> str:
        return f"TikTokShopEmulator(url={self.url if self._httpd else None!r})"

    def now(self) -> float:
        """This TikTok's clock: the machine's plus `clock_offset`."""
        return time.time() + self.clock_offset

    # -- test helpers ---------------------------------------------------------------------

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired (105002 on the next API call)."""
        with self._lock:
            for grant in self._access.values():
                grant.expires_at = self.now() - 1

    def expire_refresh_tokens(self) -> None:
        """Make every refresh token expired (36004001 on the next refresh)."""
        with self._lock:
            for grant in self._refresh.values():
                grant.expires_at = self.now() - 1

    def revoke_refresh_tokens(self) -> None:
        """Forget every refresh token (36004005 on the next refresh)."""
        with self._lock:
            self._refresh.clear()

    def revoke_authorization(self, open_id: str | None = None) -> None:
        """The seller `open_id` (or everyone) deauthorizes the app: 105001 and 36004005."""
        with self._lock:
            for grants in (self._access, self._refresh):
                for grant in grants.values():
                    if open_id is None or grant.seller.open_id == open_id:
                        grant.revoked = True

    def rate_limit_next(self, n: int, retry_after: int | None = None) -> None:
        """Answer the next `n` Shop API calls HTTP 429 / 36009002, with Retry-After if given."""
        with self._lock:
            self._rate_limited, self._retry_after = n, retry_after

    def fail_next(self, n: int, status: int = 500, code: int = 36009003) -> None:
        """Answer the next `n` Shop API calls with this HTTP status and envelope code."""
        with self._lock:
            self._failures = [(status, code)] * n

    # -- routing --------------------------------------------------------------------------

    def route(self, req: Request) -> Response:
        """Dispatch to the authorization pages, the token endpoints and the Shop API."""
        if req.path in _PAGES and req.method in ("GET", "POST"):
            return self._authorize(req)
        if req.path in (TOKEN_PATH, REFRESH_PATH):
            return self._token_endpoint(req)
        api = self._api.get((req.method, req.path))
        if api is not None:
            return self._api_call(req, *api)
        return Response(404, "404 page not found")

    def _envelope(
        self,
        code: int,
        message: str,
        data: dict[str, Any] | None = None,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Response:
        body: dict[str, Any] = {"code": code, "message": message}
        if data is not None or code == 106001:  # 106001 is documented with "data": null
            body["data"] = data
        # request_id: 14 digits of time plus 20 hex characters.
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(self.now()))
        body["request_id"] = stamp + secrets.token_hex(10)
        return Response(status, body, dict(headers or {}))

    # -- authorization pages ------------------------------------------------------------

    def _authorize(self, req: Request) -> Response:
        params = req.form if req.method == "POST" else req.query
        user_type, app_param = _PAGES[req.path]
        if app_param == "service_id" and params.get("service_id") != self.service_id:
            return _error_page("This service does not exist")
        if app_param == "app_key":  # the creator link names the app by key and needs a state
            if params.get("app_key") != self.app_key:
                return _error_page("This app does not exist (check app_key)")
            if not params.get("state"):
                return _error_page("The authorization link is missing its state parameter")
        if req.method == "POST":
            return self._decide(req, user_type)
        return self._consent(req.path, user_type, app_param, params)

    def _consent(
        self, path: str, user_type: int, app_param: str, params: dict[str, str]
    ) -> Response:
        esc = html.escape
        options = "".join(
            f'<option value="{esc(s.open_id)}">{esc(s.label)}</option>'
            for s in self.sellers
            if s.user_type == user_type
        )
        boxes = ""
        if user_type == CREATOR_TYPE:  # creators may untick scopes; at least one must stay
            boxes = "".join(
                f'<p><label><input type="checkbox" name="scope" value="{esc(name)}"'
                f"{'' if name in self.creator_scopes_denied else ' checked'}> {esc(name)}"
                "</label></p>"
                for name in self.scopes[CREATOR_TYPE]
            )
        app_value = self.app_key if app_param == "app_key" else self.service_id
        body = (
            "<p>An app wants access to your TikTok Shop account.</p>"
            f'<form method="post" action="{path}">'
            f'<input type="hidden" name="{app_param}" value="{esc(app_value)}">'
            f'<input type="hidden" name="state" value="{esc(params.get("state", ""))}">'
            f'<p><label>Account <select name="account">{options}</select></label></p>{boxes}'
            '<p><button type="submit" name="decision" value="authorize">Authorize</button>'
            '<button type="submit" name="decision" value="deny">Deny</button></p></form>'
        )
        return Response.html(200, page("Authorize app", body))

    def _decide(self, req: Request, user_type: int) -> Response:
        form = req.form
        if form.get("decision") != "authorize":
            # TikTok sends the literal text "null" as the code when the user refuses.
            return self._redirect(
                {"code": "null", "state": form.get("state", ""), "error": "auth_denied"}
            )
        seller = next(
            (
                s
                for s in self.sellers
                if s.open_id == form.get("account") and s.user_type == user_type
            ),
            None,
        )
        if seller is None:
            return _error_page("Choose an account to authorize")
        scopes = self.scopes[user_type]
        if user_type == CREATOR_TYPE:
            ticked = set(req.form_multi.get("scope", []))
            scopes = [name for name in scopes if name in ticked]
            if not scopes:
                return _error_page("Select at least one permission to authorize")
        code = "GCP_" + secrets.token_urlsafe(32)
        with self._lock:
            self._codes[code] = _Grant(seller, self.now() + self.code_lifetime, scopes)
        # As in a real capture: app_key, code, locale, shop_region, state.
        return self._redirect(
            {
                "app_key": self.app_key,
                "code": code,
                "locale": self.locale,
                "shop_region": seller.seller_base_region or "",
                "state": form.get("state", ""),
            }
        )

    def _redirect(self, params: dict[str, str]) -> Response:
        parts = urllib.parse.urlsplit(self.redirect_url)
        query = urllib.parse.urlencode(urllib.parse.parse_qsl(parts.query) + list(params.items()))
        return Response.redirect(urllib.parse.urlunsplit(parts._replace(query=query)))

    # -- token endpoints ------------------------------------------------------------------

    def _token_endpoint(self, req: Request) -> Response:
        if req.method != "GET":  # as observed: a POST with a body is not routed at all
            return Response(404, "404 page not found")
        with self._lock:
            self.token_calls.append(req.path)
            self.token_requests.append(
                {
                    "path": req.path,
                    "grant_type": req.query.get("grant_type"),
                    "params": sorted(req.query_multi),
                }
            )
        resp = self._token(req) if req.path == TOKEN_PATH else self._refresh_token(req)
        if isinstance(resp.body, dict):
            with self._lock:
                self.responses.append(resp.body)
        return resp

    def _app_ok(self, q: dict[str, str]) -> bool:
        return hmac.compare_digest(q.get("app_key", ""), self.app_key) and hmac.compare_digest(
            q.get("app_secret", ""), self.app_secret
        )

    def _issue(self, grant: _Grant, refresh: str | None = None) -> dict[str, Any]:
        """Mint tokens (caller holds the lock); `refresh` keeps an unrotated refresh token."""
        now, seller = self.now(), grant.seller
        access = "ROW_" + secrets.token_urlsafe(32)
        self._access[access] = _Grant(seller, now + self.access_token_lifetime, grant.scopes)
        if refresh is None:
            refresh = "ROW_" + secrets.token_urlsafe(32)
            self._refresh[refresh] = _Grant(seller, now + self.refresh_token_lifetime, grant.scopes)
        data: dict[str, Any] = {
            "access_token": access,
            "access_token_expire_in": int(self._access[access].expires_at),  # absolute time
            "refresh_token": refresh,
            "refresh_token_expire_in": int(self._refresh[refresh].expires_at),
            "open_id": seller.open_id,
            "seller_name": seller.seller_name,
            "user_type": seller.user_type,
            "granted_scopes": list(grant.scopes),
        }
        if seller.seller_base_region is not None:
            data["seller_base_region"] = seller.seller_base_region
        return data

    def _token(self, req: Request) -> Response:
        q = req.query
        # 36009004 for bad parameters is TikTok's "invalid parameter"; its exact use here is ours.
        if q.get("grant_type") != "authorized_code" or not self._app_ok(q):
            return self._envelope(36009004, "invalid parameter: app_key, app_secret or grant_type")
        with self._lock:
            grant = self._codes.get(q.get("auth_code", ""))
            if grant is None or grant.used or grant.expires_at < self.now():
                return self._envelope(36004004, "invalid auth code")
            grant.used = True
            return self._envelope(0, "success", self._issue(grant))

    def _refresh_token(self, req: Request) -> Response:
        q = req.query  # grant_type is not checked: TikTok's own SDK sends authorized_code here
        if not self._app_ok(q):
            return self._envelope(36009004, "invalid parameter: app_key or app_secret")
        with self._lock:
            old = q.get("refresh_token", "")
            grant = self._refresh.get(old)
            if grant is None or grant.revoked:
                return self._envelope(36004005, "can not find related auth record")
            if grant.expires_at < self.now():
                return self._envelope(36004001, "refresh token is expired")
            if self.rotate_refresh_tokens:
                del self._refresh[old]
                return self._envelope(0, "success", self._issue(grant))
            return self._envelope(0, "success", self._issue(grant, refresh=old))

    # -- Shop API: the checks every call goes through ---------------------------------------

    def _api_call(self, req: Request, creator_api: bool, answer: _Answer) -> Response:
        expected = _signature(self.app_secret, req)
        sign_valid = hmac.compare_digest(req.query.get("sign", ""), expected)
        checked = self._check_call(req, sign_valid, creator_api)
        resp = answer(req, checked) if isinstance(checked, _Grant) else checked
        code = resp.body.get("code") if isinstance(resp.body, dict) else None
        with self._lock:
            self.api_calls.append(
                {
                    "method": req.method,
                    "path": req.path,
                    "params": sorted(req.query_multi),  # names only: values may be secret
                    "sign_valid": sign_valid,
                    "status": resp.status,
                    "code": code,
                    "time": time.monotonic(),
                }
            )
        return resp

    def _check_call(self, req: Request, sign_valid: bool, creator_api: bool) -> Response | _Grant:
        """Return the caller's grant, or the error TikTok would answer (order: class docstring)."""
        q = req.query
        # The 400 status of 36009004 is ours; TikTok documents the code only.
        if not hmac.compare_digest(q.get("app_key", ""), self.app_key):
            return self._envelope(36009004, "Invalid app_key: missing or unknown", status=400)
        try:
            stamp = int(q.get("timestamp", ""))
        except ValueError:
            return self._envelope(
                36009004, "Invalid timestamp: not Unix seconds or missing", status=400
            )
        if not -TIMESTAMP_PAST <= stamp - self.now() <= TIMESTAMP_FUTURE:
            return self._envelope(
                36009004,
                "Invalid timestamp: the timestamp is out of the allowed window "
                f"({TIMESTAMP_PAST} seconds back to {TIMESTAMP_FUTURE} seconds ahead)",
                status=400,
            )
        if any(len(v) > 1 for v in req.query_multi.values()):
            # How TikTok signs repeated parameters is not published; this emulator refuses them.
            return self._envelope(36009004, "Invalid parameter: repeated parameter", status=400)
        if not sign_valid:
            return self._envelope(106001, "Invalid credentials: sign is invalid", status=401)
        with self._lock:
            if self._rate_limited > 0:
                self._rate_limited -= 1
                after = self._retry_after
                headers = {"Retry-After": str(after)} if after is not None else {}
                return self._envelope(36009002, "Too many requests", status=429, headers=headers)
            if self._failures:
                status, code = self._failures.pop(0)
                return self._envelope(code, "Internal error", status=status)
            grant = self._access.get(req.headers.get(TOKEN_HEADER, ""))
        if grant is None:
            return self._envelope(36009004, "Invalid access token", status=401)
        if grant.revoked:
            return self._envelope(105001, "The seller has deauthorized the app", status=401)
        if grant.expires_at < self.now():
            return self._envelope(
                105002, "Expired credentials: access token is expired", status=401
            )
        if (grant.seller.user_type == CREATOR_TYPE) != creator_api:
            kind = "creator" if grant.seller.user_type == CREATOR_TYPE else "seller"
            return self._envelope(
                101000, f"The API is not available for this user type ({kind})", status=403
            )  # the 403 is ours
        return grant

    # -- Shop API: the endpoints -----------------------------------------------------------

    def _shops(self, req: Request, grant: _Grant) -> Response:
        return self._envelope(0, "Success", {"shops": grant.seller.shops})

    def _creator_profile(self, req: Request, grant: _Grant) -> Response:
        creator = grant.seller  # the profile's shape is ours
        return self._envelope(
            0, "Success", {"open_id": creator.open_id, "nickname": creator.nickname or ""}
        )

    def _search_products(self, req: Request, grant: _Grant) -> Response:
        q = req.query
        cipher = q.get("shop_cipher", "")
        shop = next((s for s in grant.seller.shops if s.get("cipher") == cipher), None)
        if shop is None:
            why = "not a shop of this authorization" if cipher else "required for this API"
            return self._envelope(36009004, f"Invalid shop_cipher: {why}", status=400)
        size = q.get("page_size", "")
        if not (size.isascii() and size.isdigit()) or not 1 <= int(size) <= 100:
            return self._envelope(
                36009004, "Invalid page_size: a number from 1 to 100 is required", status=400
            )
        try:
            body = json.loads(req.body) if req.body.strip() else {}
        except ValueError:
            body = None
        status = body.get("status", "ALL") if isinstance(body, dict) else None
        if status != "ALL" and status not in PRODUCT_STATUSES:
            return self._envelope(
                36009004, "Invalid request body: a JSON object with a known status", status=400
            )
        products = [p for p in self._products(shop) if status in ("ALL", p["status"])]
        offset = self._read_page_token(q.get("page_token", ""), cipher, status)
        if offset is None:
            return self._envelope(36009004, "Invalid page_token", status=400)
        end = offset + int(size)
        following = self._page_token(cipher, status, end) if end < len(products) else ""
        data = {
            "products": products[offset:end],
            "next_page_token": following,
            "total_count": len(products),
        }
        return self._envelope(0, "Success", data)

    def _products(self, shop: dict[str, str]) -> list[dict[str, Any]]:
        """The shop's fake catalogue: the same ids and titles on every run (shape ours)."""
        base = int.from_bytes(hashlib.sha256(shop["cipher"].encode()).digest()[:4], "big")
        made = 1704067200  # 2024-01-01 UTC
        return [
            {
                "id": f"17{base % 10**9:09d}{i:08d}",
                "title": f"{shop.get('name', 'Shop')} product {i}",
                # Every fifth product is not live, so a status filter has something to drop.
                "status": PRODUCT_STATUSES[0 if i % 5 else 1 + i // 5 % 2],
                "create_time": made + i * 3600,
                "update_time": made + i * 7200,
            }
            for i in range(1, self.products_per_shop + 1)
        ]

    def _page_token(self, cipher: str, status: str, offset: int) -> str:
        """An opaque token for the page at `offset`, bound to the shop and the filter."""
        mac = hmac.new(self._page_key, f"{cipher}\n{status}\n{offset}".encode(), "sha256")
        raw = f"{offset}:{mac.hexdigest()[:24]}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _read_page_token(self, token: str, cipher: str, status: str) -> int | None:
        """The offset a page token stands for; None when tampered with or foreign."""
        if not token:
            return 0
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            offset = int(raw.split(":", 1)[0])
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            return None
        if offset < 0 or not hmac.compare_digest(token, self._page_token(cipher, status, offset)):
            return None
        return offset


def _error_page(message: str) -> Response:
    """TikTok's error pages: a message, no form, no redirect."""
    return Response.html(200, page("TikTok Shop", f"<p>{html.escape(message)}</p>"))


def tiktok_config(
    path: Path,
    emulator_url: str,
    port: int,
    *,
    name: str = "tiktok-shop",
    client_id: str = "demo-app-key",
    service_id: str = "7301234567890123456",
    secret_var: str = "TIKTOK_APP_SECRET",
    extra: str = "",
    authorize_path: str = AUTHORIZE_PATH,
) -> Path:
    """Write a providers.yaml whose tiktok_shop provider points at an emulator (for tests)."""
    text = f"""\
default: {name}
providers:
  {name}:
    plugin: tiktok_shop
    client_id: {client_id}
    client_secret: ${{{secret_var}}}
    service_id: "{service_id}"
    redirect_uri: http://localhost:{port}/
    authorization_endpoint: {emulator_url}{authorize_path}
    token_endpoint: {emulator_url}/api/v2/token/get
    refresh_endpoint: {emulator_url}/api/v2/token/refresh
    api_base_url: {emulator_url}
"""
    path.write_text(text + extra, encoding="utf-8")
    return path
