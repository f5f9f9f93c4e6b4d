"""A local TikTok Shop authorization and API server that behaves as the reference says.

One loopback server stands in for services.tiktokshop.com (consent page), auth.tiktok-shops.com
(token endpoints) and open-api.tiktokglobalshop.com (Get Authorized Shops); point a provider's
endpoints at it. Error codes not published by TikTok are marked as such below.
"""

from __future__ import annotations

import hmac
import html
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopauth.emulator import EmulatorServer, Request, Response, page

TOKEN_PATH = "/api/v2/token/get"
REFRESH_PATH = "/api/v2/token/refresh"
AUTHORIZE_PATH = "/open/authorize"
SHOPS_PATH = "/authorization/202309/shops"
SIGN_WINDOW = 300  # TikTok accepts timestamps within 5 minutes of its clock


def _signature(secret: str, req: Request) -> str:
    """TikTok's documented signature, written apart from the client's `sign` on purpose."""
    signed = "".join(
        name + req.query[name] for name in sorted(req.query) if name not in ("sign", "access_token")
    )
    message = secret.encode() + req.path.encode() + signed.encode() + req.body + secret.encode()
    return hmac.new(secret.encode(), message, "sha256").hexdigest()


@dataclass
class Seller:
    """An account that can authorize the app: a seller (user_type 0) or a creator (1)."""

    open_id: str
    seller_name: str | None
    seller_base_region: str | None = "GB"
    user_type: int = 0
    shops: list[dict[str, str]] = field(default_factory=list)


def _default_sellers() -> list[Seller]:
    return [
        Seller(
            "7010736057180325637",
            "Jjj test shop",
            "GB",
            0,
            [
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
            ],
        ),
        Seller("7010736057180399999", None, None, 1, []),  # a creator: no seller_name
    ]


@dataclass
class _Grant:
    seller: Seller
    expires_at: float
    used: bool = False


class TikTokShopEmulator(EmulatorServer):
    """TikTok Shop's consent page, GET-only token endpoints and a signed Shop API call."""

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
        self.token_calls: list[str] = []  # the paths of token/get and token/refresh calls
        # What each token call carried, secrets left out: grant_type and the parameter names.
        self.token_requests: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []  # every token endpoint answer, as sent
        self._lock = threading.Lock()
        self._codes: dict[str, _Grant] = {}
        self._access: dict[str, _Grant] = {}
        self._refresh: dict[str, _Grant] = {}

    def __repr__(self) -> str:
        return f"TikTokShopEmulator(url={self.url if self._httpd else None!r})"

    # -- test helpers ---------------------------------------------------------------------

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired (105002 on the next API call)."""
        with self._lock:
            for grant in self._access.values():
                grant.expires_at = time.time() - 1

    def expire_refresh_tokens(self) -> None:
        """Make every refresh token expired (36004001 on the next refresh)."""
        with self._lock:
            for grant in self._refresh.values():
                grant.expires_at = time.time() - 1

    def revoke_refresh_tokens(self) -> None:
        """Forget every refresh token (36004005 on the next refresh)."""
        with self._lock:
            self._refresh.clear()

    # -- routing --------------------------------------------------------------------------

    def route(self, req: Request) -> Response:
        """Dispatch to the consent page, the token endpoints and the shops API."""
        if req.path == AUTHORIZE_PATH:
            return self._decide(req) if req.method == "POST" else self._consent(req)
        if req.path in (TOKEN_PATH, REFRESH_PATH):
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
        if req.path == SHOPS_PATH and req.method == "GET":
            return self._shops(req)
        return Response(404, "404 page not found")

    @staticmethod
    def _envelope(
        code: int, message: str, data: dict[str, Any] | None = None, status: int = 200
    ) -> Response:
        # request_id: 14 digits of time plus 20 hex characters.
        body: dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            body["data"] = data
        body["request_id"] = time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(10)
        return Response(status, body)

    # -- consent page ---------------------------------------------------------------------

    def _consent(self, req: Request) -> Response:
        if req.query.get("service_id") != self.service_id:
            return Response.html(200, page("TikTok Shop", "<p>This service does not exist</p>"))
        esc = html.escape
        options = "".join(
            f'<option value="{esc(s.open_id)}">{esc(s.seller_name or "Creator " + s.open_id)}'
            "</option>"
            for s in self.sellers
        )
        body = (
            "<p>An app wants access to your TikTok Shop account.</p>"
            f'<form method="post" action="{AUTHORIZE_PATH}">'
            f'<input type="hidden" name="service_id" value="{esc(self.service_id)}">'
            f'<input type="hidden" name="state" value="{esc(req.query.get("state", ""))}">'
            f'<p><label>Account <select name="account">{options}</select></label></p>'
            '<p><button type="submit" name="decision" value="authorize">Authorize</button>'
            '<button type="submit" name="decision" value="deny">Deny</button></p></form>'
        )
        return Response.html(200, page("Authorize app", body))

    def _decide(self, req: Request) -> Response:
        form = req.form
        if form.get("service_id") != self.service_id:
            return Response.html(200, page("TikTok Shop", "<p>This service does not exist</p>"))
        params: dict[str, str] = {}
        if form.get("decision") == "authorize":
            seller = next(
                (s for s in self.sellers if s.open_id == form.get("account")), self.sellers[0]
            )
            code = secrets.token_urlsafe(32)
            with self._lock:
                self._codes[code] = _Grant(seller, time.time() + self.code_lifetime)
            params = {
                "code": code,
                "state": form.get("state", ""),
                "locale": self.locale,
                "shop_region": seller.seller_base_region or "",
            }
        else:
            params = {"code": "", "state": form.get("state", ""), "error": "auth_denied"}
        parts = urllib.parse.urlsplit(self.redirect_url)
        query = urllib.parse.urlencode(urllib.parse.parse_qsl(parts.query) + list(params.items()))
        return Response.redirect(urllib.parse.urlunsplit(parts._replace(query=query)))

    # -- token endpoints ------------------------------------------------------------------

    def _app_ok(self, q: dict[str, str]) -> bool:
        return hmac.compare_digest(q.get("app_key", ""), self.app_key) and hmac.compare_digest(
            q.get("app_secret", ""), self.app_secret
        )

    def _issue(self, seller: Seller, refresh: str | None = None) -> dict[str, Any]:
        """Mint tokens (caller holds the lock); `refresh` keeps an unrotated refresh token."""
        now = time.time()
        access = "ROW_" + secrets.token_urlsafe(32)
        self._access[access] = _Grant(seller, now + self.access_token_lifetime)
        if refresh is None:
            refresh = "ROW_" + secrets.token_urlsafe(32)
            self._refresh[refresh] = _Grant(seller, now + self.refresh_token_lifetime)
        data: dict[str, Any] = {
            "access_token": access,
            "access_token_expire_in": int(self._access[access].expires_at),  # absolute time
            "refresh_token": refresh,
            "refresh_token_expire_in": int(self._refresh[refresh].expires_at),
            "open_id": seller.open_id,
            "seller_name": seller.seller_name,
            "user_type": seller.user_type,
            "granted_scopes": [
                "seller.authorization.info",
                "seller.product.basic",
                "seller.order.info",
                "seller.shop.info",
            ],
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
            if grant is None or grant.used or grant.expires_at < time.time():
                return self._envelope(36004004, "invalid auth code")
            grant.used = True
            return self._envelope(0, "success", self._issue(grant.seller))

    def _refresh_token(self, req: Request) -> Response:
        q = req.query  # grant_type is not checked: TikTok's own SDK sends authorized_code here
        if not self._app_ok(q):
            return self._envelope(36009004, "invalid parameter: app_key or app_secret")
        with self._lock:
            old = q.get("refresh_token", "")
            grant = self._refresh.get(old)
            if grant is None:
                return self._envelope(36004005, "can not find related auth record")
            if grant.expires_at < time.time():
                return self._envelope(36004001, "refresh token is expired")
            if self.rotate_refresh_tokens:
                del self._refresh[old]
                return self._envelope(0, "success", self._issue(grant.seller))
            return self._envelope(0, "success", self._issue(grant.seller, refresh=old))

    # -- Shop API -------------------------------------------------------------------------

    def _shops(self, req: Request) -> Response:
        q = req.query
        if q.get("app_key") != self.app_key:
            return self._envelope(36009004, "invalid parameter: app_key", status=400)
        try:
            stamp = int(q.get("timestamp", ""))
        except ValueError:
            return self._envelope(36009004, "invalid parameter: timestamp", status=400)
        if abs(time.time() - stamp) > SIGN_WINDOW:
            return self._envelope(106001, "invalid timestamp", status=401)
        if any(len(v) > 1 for v in req.query_multi.values()):
            # How TikTok signs repeated parameters is not published; this emulator refuses them.
            return self._envelope(36009004, "invalid parameter: repeated parameter", status=400)
        if not hmac.compare_digest(q.get("sign", ""), _signature(self.app_secret, req)):
            return self._envelope(106001, "Invalid credentials: sign is invalid", status=401)
        with self._lock:
            grant = self._access.get(req.headers.get("x-tts-access-token", ""))
        if grant is None:
            return self._envelope(36009004, "invalid parameter: access token", status=401)
        if grant.expires_at < time.time():
            return self._envelope(
                105002, "Expired credentials: access token is expired", status=401
            )
        return self._envelope(0, "Success", {"shops": grant.seller.shops})


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
    authorization_endpoint: {emulator_url}/open/authorize
    token_endpoint: {emulator_url}/api/v2/token/get
    refresh_endpoint: {emulator_url}/api/v2/token/refresh
    api_base_url: {emulator_url}
"""
    path.write_text(text + extra, encoding="utf-8")
    return path
