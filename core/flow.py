"""The login flow, shaped like Chilkat's OAuth2 object: start, launch_browser, wait, cancel."""

from __future__ import annotations

import abc
import enum
import hmac
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import oauth, pages
from .errors import AccessDenied, FlowCancelled, FlowTimeout, LoopauthError, ProviderError
from .listener import Listener
from .provider import Provider
from .store import Store
from .token import Token, is_token_text
from .urls import origin, origin_text

if TYPE_CHECKING:
    from . import browser
    from .paste import PastePrompt

log = logging.getLogger("loopauth.flow")


# What a code may look like when pasted alone: RFC 6749 leaves codes opaque, but the ones
# providers issue are URL-safe (some percent-encoded in the address bar, some with padding).
_CODE = re.compile(r"[A-Za-z0-9._~+/%*!$'()-]{8,4096}={0,2}")
_BARE = "\0bare"  # marks a bare pasted code among the parameters (no real key has a NUL)


class State(enum.Enum):
    """Where a flow is (Chilkat's AuthFlowState 0-5, plus cancelled and timed out)."""

    IDLE = "idle"
    WAITING_FOR_REDIRECT = "waiting for redirect"
    WAITING_FOR_TOKEN = "waiting for token"
    SUCCEEDED = "succeeded"
    DENIED = "denied"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed out"

    @property
    def finished(self) -> bool:
        """Return True for the end states."""
        return self not in (State.IDLE, State.WAITING_FOR_REDIRECT, State.WAITING_FOR_TOKEN)


class LoginFlow(abc.ABC):
    """What a browser login (`Flow`) and a device login (`DeviceFlow`) share: the provider,
    the account asked for, the store, the states and how the result is told."""

    def __init__(
        self, provider: Provider, *, account: str | None = None, store: Store | None = None
    ) -> None:
        self.provider = provider
        self.account = account
        if store is None:
            from .stores import open_store

            store = open_store(provider)
        self.store = store
        self.state = State.IDLE
        self.failure: str | None = None
        self.error: LoopauthError | None = None
        self.token: Token | None = None
        self.saved_to: str | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider.name!r}, state={self.state.value!r})"

    @property
    def token_response(self) -> dict[str, Any] | None:
        """Return the provider's raw token response, or its error answer (AccessTokenResponse)."""
        if self.token is not None:
            return self.token.raw
        if isinstance(self.error, ProviderError) and self.error.response is not None:
            return dict(self.error.response)
        return None

    def cancel(self, reason: str = "cancelled") -> None:
        """Stop waiting (and close what the login holds open); a finished flow is left as is."""
        self._finish(
            State.CANCELLED, reason, FlowCancelled(f"{self.provider.name}: login {reason}")
        )

    def result(self) -> Token:
        """Return the token of a successful flow, or raise the error that ended it."""
        if self.state is State.SUCCEEDED and self.token is not None:
            return self.token
        if self.error is not None:
            raise self.error
        raise LoopauthError(f"the flow has not finished (state: {self.state.value})")

    def wait(
        self, timeout: float | None = None, *, on_tick: Callable[[float], None] | None = None
    ) -> State:
        """Block until the flow ends or `timeout` seconds pass (default: `_limit`'s)."""
        if self.state is State.IDLE:
            raise LoopauthError("start() the flow before waiting for it")
        limit = self._limit(timeout)
        deadline = time.monotonic() + limit
        try:
            while not self._done.is_set():
                left = deadline - time.monotonic()
                if left <= 0 and self.state is State.WAITING_FOR_REDIRECT:
                    self._finish(State.TIMED_OUT, *self._timed_out(limit))
                    break
                shown = self._time_to_show(left)
                if on_tick is not None and shown is not None:
                    on_tick(max(shown, 0.0))
                # Short slices so Ctrl+C is handled promptly on every platform.
                self._done.wait(min(max(left, 0.05), 1.0 if on_tick else 0.25))
        except KeyboardInterrupt:
            self.cancel("interrupted")
            raise
        return self.state

    def _limit(self, timeout: float | None) -> float:
        """Return how long wait() waits: `timeout`, else the provider's `timeout`."""
        return self.provider.timeout if timeout is None else float(timeout)

    @abc.abstractmethod
    def _timed_out(self, limit: float) -> tuple[str, LoopauthError]:
        """Return the failure text and error of a wait that lasted `limit` seconds."""

    def _time_to_show(self, left: float) -> float | None:
        """Return the seconds a countdown shows (None: show none now)."""
        return left

    @abc.abstractmethod
    def _finish(self, state: State, failure: str | None, error: LoopauthError | None) -> bool:
        """Enter an end state once (False if the flow had ended already) and wake wait()."""

    def _own(self, token: Token, callback: Mapping[str, str]) -> None:
        """Name the account the new token belongs to, bind it to its issuer, check its scopes."""
        account = oauth.name_account(self.provider, token, callback)
        token.account_id = account.id
        token.account_label = self.account or account.label
        if account.id == "default" and self.account:
            token.account_id = self.account
        token.bound_to = oauth.binding(self.provider)
        self._check_scopes(token)

    def _check_scopes(self, token: Token) -> None:
        """Refuse a grant without a required scope; warn about one narrower than asked for.

        A provider may grant fewer scopes than asked (RFC 6749 §3.3), and on some consent
        pages (TikTok Shop's creators) the user unticks some: a script that needs a scope
        should learn it at login, not at its first failing call.
        """
        name, granted = self.provider.name, set(token.scopes)
        holds = self.provider.type.scope_granted

        def lacks(scope: str) -> bool:
            if holds is not None:  # the provider's type says how it writes scopes
                return not holds(self.provider, scope, token)
            # Without a type that knows: a granted URL ending in the short name counts (Google
            # as a generic oauth2 provider answers `email` as .../auth/userinfo.email).
            return scope not in granted and not any(
                "://" in g and (g.endswith("." + scope) or g.endswith("/" + scope)) for g in granted
            )

        required = [s for s in self.provider.get("required_scopes") or [] if lacks(s)]
        if required:
            raise AccessDenied(
                f"{name}: the login was not granted the required scope(s) "
                f"{', '.join(required)} (required_scopes); nothing was stored. Log in again "
                "and allow them"
            )
        unasked = [s for s in self._asked_scopes() if lacks(s)]
        lost = [s for s in self._stored_scopes(token) if lacks(s) and s not in unasked]
        if unasked or lost:
            than = " and ".join(
                what for what, some in (("asked for", unasked), ("held before", lost)) if some
            )
            log.warning(
                "%s: this login was granted fewer scopes than %s: without %s. Calls that "
                "need them will fail; log in again and allow them if they are needed",
                name,
                than,
                ", ".join(unasked + lost),
            )

    def _asked_scopes(self) -> list[str]:
        """Return the scopes this login asked for."""
        return list(self.provider.get("scope") or [])

    def _stored_scopes(self, token: Token) -> list[str]:
        """Return the scopes the account's stored token holds (none when there is none)."""
        if not token.account_id:
            return []
        try:
            return list(self.store.read(self.provider.name, token.account_id).scopes)
        except LoopauthError:  # no token yet, or a damaged one being replaced
            return []


class Flow(LoginFlow):
    """One authorization-code login through the system browser and a loopback listener."""

    def __init__(
        self, provider: Provider, *, account: str | None = None, store: Store | None = None
    ) -> None:
        super().__init__(provider, account=account, store=store)
        self.callback_params: dict[str, str] = {}
        self.authorization_url: str | None = None
        self.redirect_uri: str | None = None
        self._request: oauth.AuthorizationRequest | None = None
        self._listener: Listener | None = None
        self._launch_page: str | None = None
        self._launcher: browser.Launcher | None = None
        self._preloading = False
        self.pasting = False  # run() is also taking a pasted address (see paste())
        self._paste_choice: bool | None = False
        self._prompt: PastePrompt | None = None
        self._pasted_code = False  # the redirect taken was a bare pasted code (no state, no iss)
        self._announced = True  # the URL is shown (run() holds this back until it has been)
        self._browser_down = False  # the browser helper reported that none could be started

    def start(self) -> str:
        """Bind the listener and return the authorization URL to open."""
        if self.state is not State.IDLE:
            raise LoopauthError(f"this flow was already started (state: {self.state.value})")
        self.store.check_writable(self.provider.name)
        oauth.discover(self.provider)
        if not self.provider.get("authorization_endpoint") and self.provider.get(
            "device_authorization_endpoint"
        ):
            from .errors import ConfigError

            raise ConfigError(
                f"{self.provider.name} has no authorization_endpoint, only a device "
                f"endpoint: run loopauth login {self.provider.name} --device"
            )
        listener = Listener(
            self.provider.get("redirect_uri"),
            self._on_callback,
            after_reply=self._after_reply,
            ports=self.provider.get("redirect_port_range"),
        )
        self.redirect_uri = listener.start()
        self._listener = listener
        try:
            self._request = oauth.authorization_request(self.provider, self.redirect_uri)
        except BaseException:
            listener.close()
            raise
        self.authorization_url = self._request.url
        self.state = State.WAITING_FOR_REDIRECT
        return self.authorization_url

    def _asked_scopes(self) -> list[str]:
        """Return the scopes the authorization URL asked for (none where the type sends none)."""
        from urllib.parse import parse_qs, urlsplit

        query = parse_qs(urlsplit(self.authorization_url or "").query)
        if "scope" in query:
            return " ".join(query["scope"]).split()
        if self.provider.authorization_carries("scope"):
            return []  # none configured, none asked for
        # The type sends none (TikTok Shop: they are set on the app): what providers.yaml
        # lists is what the user meant to grant.
        return list(self.provider.get("scope") or [])

    def launch_browser(self) -> bool:
        """Open the authorization URL in the system browser; return False when none opened.

        Returns once the browser is being started, without waiting for it (a browser command
        may block until the browser is closed); should it then fail, a warning says so.
        """
        if self.authorization_url is None:
            raise LoopauthError("start() the flow before launching the browser")
        launcher, self._launcher = self._launcher, None
        if launcher is None:
            launcher = self._start_launcher()
            if launcher is None:
                return False  # no desktop, or only text browsers: the URL is printed instead
        from . import browser
        from .errors import UnsafePath

        # Never the URL itself on the browser's command line: other users can read it there.
        try:
            self._launch_page = browser.write_page(self.authorization_url, launcher.folder())
        except (OSError, UnsafePath) as exc:  # the user still gets the URL on the terminal
            launcher.cancel()
            log.warning("not opening a browser: cannot write the launch page (%s)", exc)
            return False
        try:
            opened = launcher.open(self._launch_page)
        except BaseException:  # Ctrl+C while a blocking $BROWSER runs (an app bundle's)
            browser.remove_page(self._launch_page)
            raise
        if not opened:
            browser.remove_page(self._launch_page)
        else:
            self._preload()  # while the browser shows the login
        return opened

    def _start_launcher(self) -> browser.Launcher | None:
        """Start the browser helper, or return None when no browser should be opened here.

        None when there is no desktop to open one on, or $BROWSER names only text-mode
        browsers, which would take over the terminal the user is waiting in (it warns).
        """
        from . import browser

        opener = browser.choose_opener()
        if opener is None:
            return None
        return browser.Launcher(
            self.provider.secret_env, on_failure=self._browser_failed, opener=opener
        )

    def _browser_failed(self) -> None:
        """The helper had the page but could not start a browser (runs in its reaper thread)."""
        with self._lock:
            self._browser_down = True
            announced = self._announced
        if announced:  # else run() says it, once the URL is on the screen
            self._after_browser_failed()

    def _after_browser_failed(self) -> None:
        """Say that no browser started; take a pasted address instead where one can be typed."""
        if self.state is not State.WAITING_FOR_REDIRECT:
            return
        log.warning(
            "%s: no browser could be started; open the URL shown above instead",
            self.provider.name,
        )
        from .paste import stdin_is_terminal

        if self._paste_choice is None and stdin_is_terminal():
            self._start_paste()

    def _preload(self) -> None:
        """Import what the token exchange needs in the background, once, while the user logs in."""
        if self._preloading:
            return
        self._preloading = True
        threading.Thread(target=oauth.preload, name="loopauth-preload", daemon=True).start()

    def wait(
        self, timeout: float | None = None, *, on_tick: Callable[[float], None] | None = None
    ) -> State:
        """Block until the flow ends or `timeout` seconds (default: the provider's) pass."""
        if self.state is not State.IDLE:
            self._preload()
        return super().wait(timeout, on_tick=on_tick)

    def _timed_out(self, limit: float) -> tuple[str, LoopauthError]:
        name = self.provider.name
        text = f"no redirect arrived within {limit:g} s"
        return text, FlowTimeout(f"{name}: {text}; run login again")

    def _time_to_show(self, left: float) -> float | None:
        return None if self.pasting else left  # a countdown would overwrite the input

    def run(
        self,
        timeout: float | None = None,
        *,
        open_browser: bool = True,
        on_url: Callable[[str, bool], None] | None = None,
        on_tick: Callable[[float], None] | None = None,
        paste: bool | None = False,
    ) -> Token:
        """Start, open the browser, wait and return the token; raise what ended the flow.

        `on_url(url, opened)` shows the URL (default: printed on stderr when no browser opened).
        `paste`: also take the address the browser ended on, pasted on stdin, racing the
        listener (see `paste()`); None does so when no browser opened (or it failed to start)
        and stdin is a terminal, as the CLI does. While pasting, `on_tick` is not called: it
        would write over the input. Default False: a program's stdin is its own.
        """
        # The browser helper starts now, to be ready by the time the URL is (discovery, the
        # listener); it gets no page, and opens nothing, if start() fails.
        self._launcher = self._start_launcher() if open_browser else None
        try:
            url = self.start()
        except BaseException:
            if self._launcher is not None:
                self._launcher.cancel()
                self._launcher = None
            raise
        self._paste_choice = paste
        with self._lock:
            self._announced = False
        try:
            opened = self.launch_browser() if open_browser else False
            from .paste import stdin_is_terminal

            self.pasting = bool(paste or (paste is None and not opened and stdin_is_terminal()))
            if on_url is not None:
                on_url(url, opened)
            elif not opened:
                print(url, file=sys.stderr, flush=True)
            if self.pasting:
                self._start_paste()
            with self._lock:
                self._announced = True
                down = self._browser_down
            if down:  # the browser failed before the URL was shown
                self._after_browser_failed()
            self.wait(timeout, on_tick=on_tick)
        except BaseException:  # the port and the launch page never outlive the call
            self.cancel("interrupted")
            raise
        finally:
            if self._prompt is not None:
                self._prompt.stop()
        return self.result()

    def _start_paste(self) -> None:
        """Start the paste prompt on stdin (once); wait() stops its countdown from then on."""
        from .paste import PastePrompt

        with self._lock:
            if self._prompt is not None or self.state.finished:
                return
            self._prompt = PastePrompt(self, sys.stdin, sys.stderr, self.redirect_uri or "")
            self.pasting = True
        self._prompt.start()

    def _finish(
        self,
        state: State,
        failure: str | None,
        error: LoopauthError | None,
        *,
        reply_pending: bool = False,
    ) -> bool:
        with self._lock:
            if self.state.finished:
                return False
            self.state, self.failure, self.error = state, failure, error
        if not reply_pending:  # else _after_reply does this once the browser has its page
            self._close()
        return True

    def _after_reply(self) -> None:
        if self.state.finished and not self._done.is_set():
            self._close()

    def _close(self) -> None:
        try:
            launcher, self._launcher = self._launcher, None
            if launcher is not None:  # ended before the browser was launched: it opens nothing
                launcher.cancel()
            if self._launch_page is not None:
                from . import browser

                browser.remove_page(self._launch_page)
            if self._listener is not None:
                # Closing from a separate thread: this may run inside a listener request thread.
                threading.Thread(target=self._listener.close, daemon=True).start()
        finally:
            # Last: wait() returns on it, and the process may end right then; the launch page
            # must be gone by that time.
            self._done.set()

    def _on_callback(self, params: dict[str, str]) -> tuple[int, str]:
        """Handle a request to the callback path; runs in a listener thread."""
        refused = self._take(params, pasted_code=False)
        if refused is not None:
            status, title, text = refused
            return status, pages.notice(title, text)
        return self._complete(params)

    def paste(self, text: str) -> str | None:
        """Take what the user pasted: the address the browser ended on, or just the code.

        An address is checked exactly as a redirect to the listener is (state, iss, single
        use; the code exchange then proves PKCE). A bare code carries no state, so it is
        taken only where PKCE binds it to this login; one the provider refuses leaves the
        login waiting. Returns None once something is taken (the flow then ends, with the
        token or an error), else why it was refused; the login keeps waiting.
        """
        params = self._pasted_params(text.strip())
        if isinstance(params, str):
            return params
        bare = params.pop(_BARE, None) is not None
        if bare and self._request is not None and self._request.verifier is None:
            return (
                "a code alone can't be checked for this provider (its logins use no PKCE); "
                "paste the whole address the browser ended on"
            )
        refused = self._take(params, pasted_code=bare)
        if refused is not None:
            return refused[2]
        self._complete(params, reply_pending=False, retry_refused_code=bare)
        if bare and self.state is State.WAITING_FOR_REDIRECT:  # the provider refused it
            return f"that code was not accepted ({self.failure}); paste the whole address"
        return None

    def _pasted_params(self, text: str) -> dict[str, str] | str:
        """Return a pasted address's query parameters (or the bare code), or what is wrong."""
        from urllib.parse import parse_qsl, unquote, urlsplit

        if not text:
            return "nothing was pasted"
        if len(text) > 8192 or not is_token_text(text) or " " in text:
            return "that is not an address or a code (it holds spaces or control characters)"
        if "://" in text:
            parts = urlsplit(text)
            expected = urlsplit(self.redirect_uri or "").path or "/"
            if (parts.path or "/") != expected:
                return f"that is not the address the login ends on (its path is not {expected})"
            query = parts.query
        elif "?" in text or re.search(r"(^|&)(code|state|error|iss)=", text):
            query = text.split("?", 1)[-1]
        elif _CODE.fullmatch(text):
            # The bare code, as shown in the address bar (percent-encoded there).
            return {"code": unquote(text), _BARE: "1"}
        else:
            return "that is neither the address the browser ended on nor a code"
        try:
            pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=64)
        except ValueError:
            return "that address has too many parameters"
        params: dict[str, str] = {}
        for key, value in pairs:
            if key in params:  # RFC 6749 §3.1, as the listener
                return f"parameter {key!r} repeats"
            params[key] = value
        if not params.get("code") and not params.get("error"):
            return "that address carries no code (copy it from the page the login ended on)"
        return params

    def _take(self, params: dict[str, str], *, pasted_code: bool) -> tuple[int, str, str] | None:
        """Accept a redirect once (state, iss); return (status, title, why) when refused.

        `pasted_code`: the user pasted the bare code, which carries no state or iss; they
        vouch for it by pasting, and PKCE still binds it to this login.
        """
        request = self._request
        with self._lock:
            if self.state is not State.WAITING_FOR_REDIRECT or request is None:
                return (
                    409,
                    "Already finished",
                    "This login has already finished; you can close this tab.",
                )
            received = request.state if pasted_code else params.get("state", "")
            if not hmac.compare_digest(received.encode(), request.state.encode()):
                # A forged or stale redirect; the real one may still come (RFC 6749 §10.12).
                log.debug("callback without the right state ignored")
                return (
                    400,
                    "Unexpected request",
                    "This request did not carry the state of the login in progress and was "
                    "ignored. The login is still waiting.",
                )
            if not self._iss_from_this_server(params.get("iss")):
                # RFC 9700 §4.4: an answer naming another server is a mix-up; like a wrong
                # state it is ignored, and the real redirect may still come.
                log.warning(
                    "ignored a redirect naming another server (iss) than %s; still waiting. "
                    "If this provider really answers with that iss, set its `issuer:`",
                    origin_text(self.authorization_url or ""),
                )
                return (
                    400,
                    "Unexpected request",
                    "This answer names another server (iss) than the one this login went to "
                    "and was ignored. The login is still waiting.",
                )
            self.state = State.WAITING_FOR_TOKEN  # the state is single use from here on
            self.callback_params = dict(params)
            self._pasted_code = pasted_code
        return None

    def _complete(
        self,
        params: dict[str, str],
        *,
        reply_pending: bool = True,
        retry_refused_code: bool = False,
    ) -> tuple[int, str]:
        """Finish a taken redirect: errors, code exchange, account, store; return the page.

        `retry_refused_code`: a bare pasted code the token endpoint refuses (a typo) puts the
        login back to waiting instead of ending it; the real redirect may still come.
        """
        name = self.provider.name
        request = self._request
        assert request is not None
        try:
            if not self._pasted_code:
                self._check_issuer(params)
            error = params.get("error")
            if error:
                desc = params.get("error_description") or ""
                text = f"{error}: {desc}" if desc else error
                if error in (self.provider.get("denied_errors") or []):
                    return self._fail(
                        State.DENIED,
                        f"access denied ({text})",
                        AccessDenied(f"{name}: access denied ({text})"),
                        detail=text,
                        reply_pending=reply_pending,
                    )
                raise ProviderError(
                    f"{name} answered the authorization with an error: {text}",
                    error=error,
                    description=desc or None,
                )
            code = params.get("code")
            if not code:
                raise ProviderError(f"{name}: the redirect carried no authorization code")
            token = oauth.exchange_code(
                self.provider, code, request.verifier, request.redirect_uri, params
            )
            self._own(token, params)
            with self._lock:
                if self.state is not State.WAITING_FOR_TOKEN:  # cancelled meanwhile
                    return 409, pages.notice("Cancelled", "The login was cancelled.")
            self.saved_to = self.store.save(token)
            self.token = token
        except ProviderError as exc:
            if retry_refused_code and exc.response is not None:
                with self._lock:
                    if self.state is State.WAITING_FOR_TOKEN:
                        self.state, self.failure = State.WAITING_FOR_REDIRECT, str(exc)
                        self.callback_params = {}
                        return 400, ""
            return self._fail(State.FAILED, str(exc), exc, reply_pending=reply_pending)
        except AccessDenied as exc:  # e.g. a required scope not granted
            return self._fail(State.DENIED, str(exc), exc, reply_pending=reply_pending)
        except LoopauthError as exc:
            return self._fail(State.FAILED, str(exc), exc, reply_pending=reply_pending)
        except Exception as exc:  # a plugin bug: report it, never leave the flow hanging
            log.debug("unexpected error in the callback", exc_info=True)
            err = LoopauthError(
                f"{name}: unexpected {type(exc).__name__} while completing the login"
            )
            return self._fail(State.FAILED, str(err), err, reply_pending=reply_pending)
        label = token.account_label or token.account
        self._finish(State.SUCCEEDED, None, None, reply_pending=reply_pending)
        return 200, pages.success(name, label, self.provider.get("success_html"))

    def _fail(
        self,
        state: State,
        text: str,
        error: LoopauthError,
        detail: str | None = None,
        *,
        reply_pending: bool = True,
    ) -> tuple[int, str]:
        self._finish(state, text, error, reply_pending=reply_pending)
        denied = state is State.DENIED
        page = pages.failure(
            self.provider.name, detail or text, self.provider.get("failure_html"), denied=denied
        )
        return (403 if denied else 502), page

    def _iss_from_this_server(self, iss: str | None) -> bool:
        """With no known issuer, an `iss` must name the authorization endpoint's origin."""
        if iss is None or self.provider.get("issuer"):
            return True  # a known issuer is checked, strictly, by _check_issuer
        return origin(iss) == origin(self.authorization_url or "")

    def _check_issuer(self, params: dict[str, str]) -> None:
        """RFC 9207: a mismatched iss, or a missing one from a server that sends it, is a mix-up."""
        expected = self.provider.get("issuer")
        iss = params.get("iss")
        if iss is not None and expected and not oauth.issued_by(self.provider, iss, {}):
            raise ProviderError(
                f"{self.provider.name}: the redirect came from issuer {iss!r}, "
                f"not {expected!r} (possible mix-up attack); login refused"
            )
        if iss is None and self.provider.get("supports_iss"):
            raise ProviderError(
                f"{self.provider.name}: the redirect carried no iss although the "
                "provider sends one (RFC 9207); login refused"
            )


def login(
    provider: Provider,
    *,
    account: str | None = None,
    timeout: float | None = None,
    open_browser: bool = True,
    store: Store | None = None,
    on_url: Callable[[str, bool], None] | None = None,
    paste: bool | None = False,
) -> Token:
    """Run a whole login and return the stored token (raises on denial, timeout or failure)."""
    flow = Flow(provider, account=account, store=store)
    return flow.run(timeout, open_browser=open_browser, on_url=on_url, paste=paste)
