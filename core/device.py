"""The device authorization grant (RFC 8628): a code the user enters on any device, then polling.

For machines without a browser (a server over SSH, a TV, a container): the provider hands out a
user code and a verification address, the user approves on their phone or laptop, and loopauth
polls the token endpoint at the pace the provider sets. `DeviceFlow` has the states of `Flow`.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from . import oauth, redact, transport
from .errors import (
    AccessDenied,
    ConfigError,
    FlowTimeout,
    LoopauthError,
    ProviderError,
)
from .flow import LoginFlow, State
from .provider import Provider, TokenRequest
from .store import Store
from .terminal import printable
from .token import Token
from .urls import check_url, safe_url

log = logging.getLogger("loopauth.device")

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL = 5.0  # RFC 8628 §3.2: when the provider names none
SLOW_DOWN_STEP = 5.0  # §3.5: slow_down adds 5 s for this and every later poll
MIN_INTERVAL = 1.0  # polling faster than once a second helps nobody
# A slow_down answer that names its new interval (GitHub) is believed up to five minutes.
MAX_TOLD_INTERVAL = 300.0
MAX_ADDRESS = 2048  # characters: a verification address is typed or scanned, not a page
MAX_LIFETIME = 86400.0  # a device code valid for more than a day is garbage
MAX_BACKOFF = 60.0  # §3.5 backoff after network failures: doubling, but never past a minute
MAX_USER_CODE = 128


@dataclass(frozen=True)
class DeviceAuthorization:
    """What the user needs to approve the login (RFC 8628 §3.2); the device code stays private."""

    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float

    @property
    def qr_uri(self) -> str:
        """Return the address a QR code should hold: the one with the code in it, if given."""
        return self.verification_uri_complete or self.verification_uri


def device_endpoint(provider: Provider) -> str:
    """Return the device authorization endpoint (configured or discovered), or raise ConfigError."""
    oauth.discover(provider)
    value = provider.get("device_authorization_endpoint")
    if not value:
        raise ConfigError(
            f"{provider.name} has no device_authorization_endpoint (neither configured nor "
            "discovered), so `login --device` cannot be used with it; if the provider supports "
            "RFC 8628, set device_authorization_endpoint: in providers.yaml"
        )
    return str(value)


def request_authorization(provider: Provider) -> tuple[DeviceAuthorization, str]:
    """Ask the provider for a device code (RFC 8628 §3.1); return what to show, and the code."""
    from authlib.oauth2.auth import ClientAuth

    url = device_endpoint(provider)
    params: dict[str, str] = {}
    scopes = provider.get("scope") or []
    if scopes:
        params["scope"] = " ".join(scopes)
    # Extra authorization parameters apply here too (Auth0's `audience`, for one).
    params.update(provider.get("auth_params") or {})
    redact.protect(provider.client_secret)
    what = f"{provider.name}'s device authorization endpoint ({safe_url(url)})"
    with transport.talking_to(url, provider.http_timeout):
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
        }
        # The client authenticates as at the token endpoint; a public one sends its client_id.
        auth = ClientAuth(provider.get("client_id"), provider.client_secret, provider.auth_method)
        url, headers, body = auth.prepare("POST", url, headers, urlencode(params))
    data = transport.request_json(
        "POST", url, what, timeout=provider.http_timeout, headers=headers, body=body
    )
    return parse_authorization(provider, data)


def parse_authorization(
    provider: Provider, data: Mapping[str, Any]
) -> tuple[DeviceAuthorization, str]:
    """Check a device authorization response strictly; return it and the device code."""
    name = provider.name
    if "error" in data:
        error, desc = str(data.get("error")), data.get("error_description")
        text = f"{error}: {desc}" if desc else error
        raise ProviderError(
            f"{name} refused the device authorization request: {text}",
            error=error,
            description=str(desc) if desc else None,
        )

    def bad(key: str, why: str) -> ProviderError:
        return ProviderError(f"{name}: the device authorization response's {key} {why}")

    device_code = data.get("device_code")
    if not isinstance(device_code, str) or not device_code:
        raise bad("device_code", "is missing or not a string")
    redact.protect(device_code)  # a bearer secret until it is spent: never in any log
    user_code = data.get("user_code")
    if not isinstance(user_code, str) or not user_code.strip():
        raise bad("user_code", "is missing or not a string")
    if len(user_code) > MAX_USER_CODE or not user_code.isprintable():
        raise bad("user_code", "is not a code a person can type")
    # Google names it verification_url; the RFC's name wins when both are there.
    uri = data.get("verification_uri") or data.get("verification_url")
    verification_uri = _address(name, "verification_uri", uri)
    if verification_uri is None:
        raise bad("verification_uri", "is missing")
    complete = _address(name, "verification_uri_complete", data.get("verification_uri_complete"))
    expires_in = _seconds(name, "expires_in", data.get("expires_in"))
    if expires_in is None or not 0 < expires_in <= MAX_LIFETIME:
        raise bad("expires_in", "is not a sensible number of seconds")
    interval = _seconds(name, "interval", data.get("interval"))
    if interval is None:
        interval = DEFAULT_INTERVAL
    if interval > expires_in:
        raise bad("interval", "is longer than the code's lifetime (expires_in)")
    # The provider's pace is kept (RFC 8628 §3.5), but never a busy loop on `0`.
    interval = max(interval, MIN_INTERVAL)
    info = DeviceAuthorization(user_code.strip(), verification_uri, complete, expires_in, interval)
    return info, device_code


def _address(name: str, key: str, value: object) -> str | None:
    """Return a verification address fit to show and to open, None when absent, or raise."""
    if value is None:
        return None
    if isinstance(value, str) and len(value) > MAX_ADDRESS:
        raise ProviderError(f"{name}: the device authorization response's {key} is too long")
    problem = check_url(value, detail=False) if isinstance(value, str) else "is not a string"
    if problem is None and isinstance(value, str) and (" " in value or not value.isprintable()):
        problem = "has characters an address cannot have"
    if problem:
        raise ProviderError(f"{name}: the device authorization response's {key} {problem}")
    return str(value)


def _seconds(name: str, key: str, value: object) -> float | None:
    """Return a number of seconds (some providers send them as strings), None when absent."""
    if value is None:
        return None
    number = math.nan
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            number = float(value)
        except (ValueError, OverflowError):
            pass
    if not math.isfinite(number) or number < 0:
        raise ProviderError(
            f"{name}: the device authorization response's {key} is not a sensible number of seconds"
        )
    return number


def describe(provider: str, info: DeviceAuthorization) -> str:
    """Return what to tell the user: where to go and which code to enter (RFC 8628 §3.3)."""
    lines = [
        f"To log in to {provider}, open this address in a browser on any device:",
        info.verification_uri,  # alone on its line, for people and scripts alike
        f"and enter the code: {info.user_code}",
    ]
    if info.verification_uri_complete:
        lines += ["Or open this address, which has the code in it:", info.verification_uri_complete]
    return "\n".join(lines)


def _network_failure(exc: ProviderError) -> bool:
    """Return True when a poll got no answer at all (no connection, or none in time)."""
    import requests

    # transport turns a requests exception into a ProviderError `from None`: the original is
    # still its __context__. A TLS failure is no passing outage: it is reported at once.
    cause = exc.__context__
    passing = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
    return isinstance(cause, passing) and not isinstance(cause, requests.exceptions.SSLError)


class DeviceFlow(LoginFlow):
    """One device authorization login (RFC 8628): show a code, poll until it is approved."""

    def __init__(
        self, provider: Provider, *, account: str | None = None, store: Store | None = None
    ) -> None:
        super().__init__(provider, account=account, store=store)
        self.authorization: DeviceAuthorization | None = None
        self.interval: float | None = None  # the current polling interval, slow_downs included
        self.polls = 0
        self._device_code: str | None = None
        self._token_endpoint = ""
        self._expires = math.inf  # time.monotonic() when the device code expires

    @property
    def expires_in(self) -> float:
        """Return the seconds left before the device code expires (0 once it has)."""
        return max(self._expires - time.monotonic(), 0.0)

    def start(self) -> DeviceAuthorization:
        """Get a device code and start polling; return what the user needs to approve it."""
        if self.state is not State.IDLE:
            raise LoopauthError(f"this flow was already started (state: {self.state.value})")
        self.store.check_writable(self.provider.name)
        self._token_endpoint = oauth.endpoint(self.provider, "token_endpoint")
        asked = time.monotonic()  # the provider's clock started no later than this
        info, self._device_code = request_authorization(self.provider)
        self.authorization, self.interval = info, info.interval
        self._expires = asked + info.expires_in
        self.state = State.WAITING_FOR_REDIRECT  # here: waiting for the user
        threading.Thread(target=self._poll, name="loopauth-device-poll", daemon=True).start()
        return info

    def _limit(self, timeout: float | None) -> float:
        """Wait until the code expires unless `timeout` is shorter."""
        return math.inf if timeout is None else float(timeout)

    def _timed_out(self, limit: float) -> tuple[str, LoopauthError]:
        return f"not approved within {limit:g} s", FlowTimeout(
            f"{self.provider.name}: the login was not approved within {limit:g} s; run login again"
        )

    def _time_to_show(self, left: float) -> float | None:
        return min(left, self.expires_in)

    def run(
        self,
        timeout: float | None = None,
        *,
        on_code: Callable[[DeviceAuthorization], None] | None = None,
        on_tick: Callable[[float], None] | None = None,
    ) -> Token:
        """Start, show the code, wait and return the token; raise what ended the flow.

        `on_code(info)` shows the code (default: instructions printed on stderr).
        """
        info = self.start()
        try:
            if on_code is not None:
                on_code(info)
            else:
                print(printable(describe(self.provider.name, info)), file=sys.stderr, flush=True)
            self.wait(timeout, on_tick=on_tick)
        except BaseException:  # the poller never outlives the call
            self.cancel("interrupted")
            raise
        return self.result()

    def _finish(self, state: State, failure: str | None, error: LoopauthError | None) -> bool:
        with self._lock:
            if self.state.finished:
                return False
            self.state, self.failure, self.error = state, failure, error
        self._done.set()  # wakes the poller too, which then stops
        return True

    def _poll(self) -> None:
        """Poll until the flow ends (runs in its own thread); every outcome finishes the flow."""
        name = self.provider.name
        try:
            self._poll_until_answered()
        except LoopauthError as exc:
            denied = isinstance(exc, AccessDenied)  # e.g. a required scope not granted
            self._finish(State.DENIED if denied else State.FAILED, str(exc), exc)
        except Exception as exc:  # a plugin bug: report it, never leave the flow hanging
            log.debug("unexpected error while polling", exc_info=True)
            err = LoopauthError(f"{name}: unexpected {type(exc).__name__} while polling")
            self._finish(State.FAILED, str(err), err)

    def _poll_until_answered(self) -> None:
        provider, name = self.provider, self.provider.name
        assert self._device_code is not None and self.interval is not None  # set by start()
        params = {**(provider.get("token_params") or {}), "device_code": self._device_code}
        # The type's token_request is for authorization codes; a device code goes as RFC 8628 says.
        request = TokenRequest(
            self._token_endpoint, DEVICE_GRANT, params, auth=provider.auth_method
        )
        wait, outage = self.interval, None
        while self._sleep(wait, outage):
            self.polls += 1
            try:
                token = oauth.send(provider, request, previous=None)
            except ProviderError as exc:
                if _network_failure(exc):
                    # §3.5: after a connection failure, poll less often (doubling, bounded).
                    wait, outage = max(self.interval, min(wait * 2, MAX_BACKOFF)), str(exc)
                    log.warning("%s: polling failed (%s); trying again in %g s", name, exc, wait)
                    continue
                outage = None
                if exc.error == "authorization_pending":
                    wait = self.interval
                    continue
                if exc.error == "slow_down":
                    # GitHub says the new interval in the answer; never less than §3.5's step.
                    told = _seconds(name, "interval", (exc.response or {}).get("interval"))
                    told = min(told or 0, MAX_TOLD_INTERVAL)
                    self.interval = max(self.interval + SLOW_DOWN_STEP, told)
                    wait = self.interval
                    log.debug("%s asked to slow down: polling every %g s", name, wait)
                    continue
                # `denied_errors`: Microsoft says authorization_declined.
                if exc.error in (provider.get("denied_errors") or ["access_denied"]):
                    desc = f"{exc.error}: {exc.description}" if exc.description else exc.error
                    text = f"access denied ({desc})"
                    self._finish(State.DENIED, text, AccessDenied(f"{name}: {text}"))
                    return
                if exc.error == "expired_token":
                    self._expired(None)
                    return
                raise
            self._complete(token)
            return

    def _sleep(self, seconds: float, outage: str | None) -> bool:
        """Wait `seconds` (never less), or less when the code expires; False: stop polling."""
        until = min(time.monotonic() + seconds, self._expires)
        while (left := until - time.monotonic()) > 0:
            if self._done.wait(left):
                return False  # cancelled or timed out meanwhile
        if time.monotonic() >= self._expires:
            self._expired(outage)
            return False
        return not self._done.is_set()

    def _expired(self, outage: str | None) -> None:
        name = self.provider.name
        why = f" (the last poll failed: {outage})" if outage else ""
        self._finish(
            State.TIMED_OUT,
            f"the code expired before the login was approved{why}",
            FlowTimeout(
                f"{name}: the code expired before the login was approved{why}; run login again"
            ),
        )

    def _complete(self, token: Token) -> None:
        """Name the account and save the token, unless the flow ended meanwhile."""
        with self._lock:
            if self.state is not State.WAITING_FOR_REDIRECT:
                return
            self.state = State.WAITING_FOR_TOKEN
        self._own(token, {})
        # Under the lock: a cancel() now either comes first (nothing saved) or after (success).
        with self._lock:
            if self.state is not State.WAITING_FOR_TOKEN:
                return
            self.saved_to = self.store.save(token)
            self.token = token
            self.state = State.SUCCEEDED
        self._done.set()


def device_login(
    provider: Provider,
    *,
    account: str | None = None,
    timeout: float | None = None,
    store: Store | None = None,
    on_code: Callable[[DeviceAuthorization], None] | None = None,
) -> Token:
    """Run a whole device login and return the stored token (raises on denial, expiry, failure)."""
    flow = DeviceFlow(provider, account=account, store=store)
    return flow.run(timeout, on_code=on_code)
