"""The Shop API session behind `shop_session()` and `loopauth api`: signed calls for one account,
optionally for one of its shops, found by name, id or cipher (cached for a day), and TikTok's
paging. Imported only when a session is made: it needs requests.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import requests

from loopauth import paths, private
from loopauth.apiclient import ApiSession
from loopauth.errors import UsageError
from loopauth.token import Token

from .api import list_shops

if TYPE_CHECKING:
    from .api import TikTokShopAuth

log = logging.getLogger("loopauth.tiktok_shop")

# Shops are added or removed rarely; a name not in the cache asks TikTok again at once anyway.
SHOP_CACHE_SECONDS = 86400.0
SHOP_CACHE_VERSION = 1
MAX_CACHE = 1 << 20


class ShopSession(ApiSession):
    """Signed Shop API calls (TikTokShopAuth); with `shop` set, its `shop_cipher` goes too."""

    def __init__(self, signer: TikTokShopAuth) -> None:
        super().__init__(signer.provider)
        self.signer = signer
        self.auth = signer
        self.shop: dict[str, Any] | None = None

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        """Add the shop's cipher (unless the call names one) before the request is signed."""
        if self.shop is not None:
            request.params = _with_cipher(request.params, request.url, str(self.shop["cipher"]))
        return super().prepare_request(request)


def _with_cipher(params: Any, url: str | bytes, cipher: str) -> Any:
    """Return `params` with shop_cipher added, unless they or the URL already carry one."""
    text = url.decode() if isinstance(url, bytes) else str(url)
    if any(k == "shop_cipher" for k, _ in parse_qsl(urlsplit(text).query)):
        return params
    if not params:
        return {"shop_cipher": cipher}
    if isinstance(params, Mapping):
        return params if "shop_cipher" in params else {**params, "shop_cipher": cipher}
    if isinstance(params, str | bytes):
        raw = params.decode() if isinstance(params, bytes) else params
        pairs: list[tuple[Any, Any]] = parse_qsl(raw, keep_blank_values=True)
    else:
        pairs = list(params)
    if any(k == "shop_cipher" for k, _ in pairs):
        return pairs
    return [*pairs, ("shop_cipher", cipher)]


def next_page(params: Mapping[str, str], response: Any) -> dict[str, str] | None:
    """TikTok's paging: `data.next_page_token` goes back as `page_token` until it is empty."""
    data = response.get("data") if isinstance(response, dict) else None
    token = data.get("next_page_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        return None
    return {**params, "page_token": token}


def choose_shop(session: ShopSession, wanted: str) -> dict[str, Any]:
    """Return the account's authorized shop that `wanted` names: its cipher, id or name (any case).

    Answered from a day-old cache when it knows the shop; otherwise Get Authorized Shops is
    asked (and the cache rewritten). No match, or a name several shops share, is a UsageError
    listing them.
    """
    token = session.signer.token()
    path = _cache_path(session.provider.name, token)
    cached = _read_cache(path, session.provider.name, token)
    if cached is not None:
        found = _matches(cached, wanted)
        if len(found) == 1:
            return found[0]
    shops = list_shops(session)
    _write_cache(path, session.provider.name, token, shops)
    found = _matches(shops, wanted)
    if len(found) == 1:
        return found[0]
    who = f"{session.provider.name} ({token.account_label or token.account})"
    if not found:
        listed = "; ".join(_describe(s) for s in shops) or "none"
        raise UsageError(
            f"{who} has no authorized shop named {wanted!r} (give a shop's name, id or "
            f"cipher); its shops: {listed}"
        )
    listed = "; ".join(_describe(s) for s in found)
    raise UsageError(
        f"{len(found)} shops of {who} are named {wanted!r}: {listed}; give the id or cipher"
    )


def _matches(shops: Sequence[Mapping[str, Any]], wanted: str) -> list[dict[str, Any]]:
    usable = [dict(s) for s in shops if isinstance(s.get("cipher"), str) and s["cipher"]]
    exact = [
        s
        for s in usable
        if wanted == s["cipher"] or (isinstance(s.get("id"), str | int) and wanted == str(s["id"]))
    ]
    if exact:
        return exact
    folded = wanted.casefold()
    return [s for s in usable if isinstance(s.get("name"), str) and s["name"].casefold() == folded]


def _describe(shop: Mapping[str, Any]) -> str:
    return f"{shop.get('name')} (id {shop.get('id')}, cipher {shop.get('cipher')})"


def _cache_path(provider: str, token: Token) -> str:
    # Keyed by whose token it is: another login under the same account id starts afresh.
    key = "\0".join((provider, token.account, str(token.extra.get("open_id", ""))))
    return os.path.join(paths.home(), "cache", f"shops-{private.sha256(key.encode())[:24]}.json")


def _read_cache(path: str, provider: str, token: Token) -> list[dict[str, Any]] | None:
    """Return the cached shops when the cache is this account's and less than a day old."""
    try:
        raw = private.read(path, MAX_CACHE, "the shop cache")
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.debug("shop cache unreadable (%s); asking TikTok Shop", type(exc).__name__)
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("version") != SHOP_CACHE_VERSION:
        return None
    owner = (provider, token.account, token.extra.get("open_id"))
    if (data.get("provider"), data.get("account"), data.get("open_id")) != owner:
        return None
    fetched = data.get("fetched_at")
    age = time.time() - fetched if isinstance(fetched, int | float) else -1.0
    shops = data.get("shops")
    if not 0 <= age < SHOP_CACHE_SECONDS or not isinstance(shops, list):
        return None
    return [s for s in shops if isinstance(s, dict)]


def _write_cache(path: str, provider: str, token: Token, shops: list[dict[str, Any]]) -> None:
    data = {
        "version": SHOP_CACHE_VERSION,
        "provider": provider,
        "account": token.account,
        "open_id": token.extra.get("open_id"),
        "fetched_at": time.time(),
        "shops": shops,
    }
    try:
        private.own_dir(os.path.dirname(path))
        private.write(path, json.dumps(data).encode())
    except OSError as exc:  # a read-only home: the next call simply asks TikTok again
        log.debug("could not write the shop cache: %s", type(exc).__name__)
