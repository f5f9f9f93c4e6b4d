"""RFC 7009 token revocation: tell the provider that a token is no longer wanted (logout)."""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import urlencode

from . import oauth, redact, transport
from .errors import ProviderError
from .provider import Provider
from .token import Token
from .urls import check_url, origin, safe_url

__all__ = ["revocation_endpoint", "revoke"]

log = logging.getLogger("loopauth.revocation")

# RFC 6749 §5.2 error codes are printable ASCII; anything else is not quoted back.
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def revocation_endpoint(provider: Provider) -> str | None:
    """Return the provider's revocation endpoint (configured or discovered), or None."""
    oauth.discover(provider)
    value = provider.get("revocation_endpoint")
    if not value:
        return None
    # discover() checks what it finds; a Provider built in code may carry anything.
    problem = check_url(value) if isinstance(value, str) else "is not a string"
    if problem:
        raise ProviderError(f"{provider.name}: revocation_endpoint {problem}")
    return str(value)


def revoke(provider: Provider, token: Token) -> bool:
    """Revoke `token` at the provider (RFC 7009); return False if it offers no revocation."""
    # Like a refresh, the token goes only to whoever issued it: a providers.yaml changed since
    # login gets nothing, not even a discovery request when the issuer changed.
    oauth.check_binding(provider, token, oauth.binding(provider, network=False))
    oauth.check_binding(provider, token, oauth.binding(provider))
    url = revocation_endpoint(provider)
    if url is None:
        return False
    # A token saved before binding existed is checked against today's settings instead.
    bound = token.bound_to or oauth.binding(provider)
    issued = [v for k in ("token_endpoint", "issuer") if (v := bound.get(k))]
    if issued and origin(url) not in {origin(v) for v in issued}:
        # The revocation URL is not part of what a token is bound to; its origin must be (a
        # server on another port would answer 200 to any token, RFC 7009 §2.2).
        raise ProviderError(
            f"{provider.name}: the revocation endpoint {safe_url(url)} is not on the server "
            f"that issued the token ({safe_url(issued[0])}); loopauth sent nothing"
        )
    # RFC 7009 §2.1: revoking the refresh token takes the grant's access tokens along.
    if token.refresh_token:
        value, hint = token.refresh_token, "refresh_token"
    else:
        value, hint = token.access_token, "access_token"
    redact.protect(provider.client_secret, token.access_token, token.refresh_token)
    what = f"{provider.name}'s revocation endpoint ({safe_url(url)})"
    log.debug("POST %s (token_type_hint=%s)", safe_url(url), hint)
    try:
        status, location, body = _post(provider, url, {"token": value, "token_type_hint": hint})
    except ProviderError as exc:
        raise ProviderError(f"{provider.name}: could not revoke the token: {exc}") from None
    if location is not None:
        # Never followed: the request carries the token and the client secret.
        raise ProviderError(
            f"{what} answered with a redirect (HTTP {status}) to {safe_url(location)}; loopauth "
            "does not follow redirects from a provider: configure the final URL"
        )
    if status == 200:  # RFC 7009 §2.2: the body is empty, or anything; unknown tokens too
        return True
    if len(body) > transport.MAX_RESPONSE:
        raise ProviderError(f"{what} answered HTTP {status} with more than 1 MiB; giving up")
    error = _error_code(body, (value, provider.client_secret))
    if status == 400 and error == "invalid_token":
        # Google answers so for a token already revoked or expired, where RFC 7009 §2.2 says
        # 200: the provider no longer honours it, which is what logout wanted.
        log.info("%s: the provider says the token is already invalid", provider.name)
        return True
    detail = f" ({error})" if error else ""
    raise ProviderError(
        f"{what} answered HTTP {status}{detail}; the token was not revoked", error=error
    )


def _post(provider: Provider, url: str, params: dict[str, str]) -> tuple[int, str | None, bytes]:
    """Send the revocation request; return the status, a redirect's Location and the body."""
    import requests
    from authlib.oauth2.auth import ClientAuth

    timeout = provider.http_timeout
    with transport.talking_to(url, timeout), requests.Session() as session:
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
        }
        # The token endpoint's client authentication; `none` puts client_id in the body.
        auth = ClientAuth(provider.get("client_id"), provider.client_secret, provider.auth_method)
        url, headers, body = auth.prepare("POST", url, headers, urlencode(params))
        session.trust_env = transport.trust_env(url)
        with session.post(
            url,
            headers=headers,
            data=body,
            timeout=timeout,
            stream=True,
            allow_redirects=False,
        ) as resp:
            status = resp.status_code
            if resp.is_redirect:
                return status, resp.headers.get("location", ""), b""
            if status == 200:
                return status, None, b""
            chunks, size = [], 0
            for chunk in resp.iter_content(65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > transport.MAX_RESPONSE:
                    break
            return status, None, b"".join(chunks)


def _error_code(body: bytes, secrets: tuple[str | None, ...]) -> str | None:
    """Return the RFC 6749 §5.2 `error` of a JSON answer, if it is one fit to quote."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, str) or not _ERROR_CODE.fullmatch(error):
        return None
    # A hostile provider could echo the token (or the secret) back as its error code.
    if any(secret and (secret in error or error in secret) for secret in secrets):
        return None
    return error
