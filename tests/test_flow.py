"""The Flow object (Chilkat's shape) and the RFC rules it enforces, through the Python API."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

import loopauth
from loopauth.config import parse
from loopauth.emulator import OAuthEmulator, browse
from loopauth.flow import Flow, State
from loopauth.store import TokenStore


def provider_for(emulator: OAuthEmulator, extra: str = "") -> loopauth.Provider:
    return parse(f"""
providers:
  emu:
    issuer: {emulator.url}
    client_id: loopauth-demo
    scope: openid email
{extra}""").select("emu")


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def callback_url(flow: Flow, **params: str) -> str:
    assert flow.redirect_uri is not None
    return f"{flow.redirect_uri}?{urlencode(params)}"


def state_of(flow: Flow) -> str:
    return parse_qs(urlsplit(flow.authorization_url or "").query)["state"][0]


def test_states_from_idle_to_succeeded(emulator: OAuthEmulator) -> None:
    flow = Flow(provider_for(emulator))
    assert flow.state is State.IDLE
    url = flow.start()
    assert flow.state is State.WAITING_FOR_REDIRECT
    threading.Thread(target=browse, args=(url,)).start()
    assert flow.wait(10) is State.SUCCEEDED
    token = flow.result()
    assert token.account_id == "user-1" and flow.token_response == token.raw
    assert flow.callback_params["iss"] == emulator.url and "code" in flow.callback_params
    assert "access_token" in flow.token_response and "secret" not in repr(flow)
    assert TokenStore().find("emu").access_token == token.access_token


def test_wait_times_out_and_cancel_closes(emulator: OAuthEmulator) -> None:
    flow = Flow(provider_for(emulator))
    flow.start()
    started = time.monotonic()
    assert flow.wait(0.3) is State.TIMED_OUT
    assert time.monotonic() - started < 2
    with pytest.raises(loopauth.FlowTimeout):
        flow.result()
    other = Flow(provider_for(emulator))
    other.start()
    threading.Timer(0.2, other.cancel).start()
    assert other.wait(10) is State.CANCELLED
    with pytest.raises(loopauth.FlowCancelled):
        other.result()
    time.sleep(0.2)
    with pytest.raises(urllib.error.URLError) as info:
        urllib.request.urlopen(callback_url(other, code="x"), timeout=1)
    assert isinstance(info.value.reason, ConnectionRefusedError)  # closed, not a 409 page


def test_iss_mismatch_is_refused_without_calling_the_token_endpoint(
    emulator: OAuthEmulator,
) -> None:
    flow = Flow(provider_for(emulator))
    flow.start()
    status = get(callback_url(flow, code="c", state=state_of(flow), iss="https://evil.example"))
    assert status == 502
    assert flow.wait(5) is State.FAILED and "mix-up" in (flow.failure or "")
    assert emulator.token_calls == []


def test_missing_iss_is_refused_when_the_provider_sends_it(emulator: OAuthEmulator) -> None:
    flow = Flow(provider_for(emulator))  # discovery says authorization_response_iss_parameter
    flow.start()
    assert get(callback_url(flow, code="c", state=state_of(flow))) == 502
    assert flow.wait(5) is State.FAILED and "no iss" in (flow.failure or "")
    assert emulator.token_calls == []


def test_error_other_than_denial_is_a_failure(emulator: OAuthEmulator) -> None:
    flow = Flow(provider_for(emulator))
    flow.start()
    get(
        callback_url(
            flow,
            error="invalid_scope",
            error_description="<b>bad</b>",
            state=state_of(flow),
            iss=emulator.url,
        )
    )
    assert flow.wait(5) is State.FAILED
    with pytest.raises(loopauth.ProviderError, match="invalid_scope"):
        flow.result()


def test_failure_page_escapes_provider_text(emulator: OAuthEmulator) -> None:
    flow = Flow(provider_for(emulator))
    flow.start()
    url = callback_url(
        flow,
        error="access_denied",
        error_description="<script>x</script>",
        state=state_of(flow),
        iss=emulator.url,
    )
    try:
        urllib.request.urlopen(url, timeout=5)
    except urllib.error.HTTPError as exc:
        body = exc.read().decode()
    assert "<script>x" not in body and "&lt;script&gt;x" in body
    assert flow.wait(5) is State.DENIED


def test_custom_pages(emulator: OAuthEmulator) -> None:
    provider = provider_for(emulator, '    success_html: "<p>Done: {provider} / {account}</p>"\n')
    flow = Flow(provider)
    url = flow.start()
    pages: list = []
    threading.Thread(target=lambda: pages.append(browse(url))).start()
    assert flow.wait(10) is State.SUCCEEDED
    time.sleep(0.2)
    assert pages and pages[0].body == "<p>Done: emu / ada@example.test</p>"


def test_pkce_rfc7636_vector_and_verifier_length(emulator: OAuthEmulator) -> None:
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    assert (
        create_s256_code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )
    from loopauth import oauth

    request = oauth.authorization_request(provider_for(emulator), "http://127.0.0.1:1/cb")
    assert request.verifier is not None and 43 <= len(request.verifier) <= 128
    query = parse_qs(urlsplit(request.url).query)
    assert query["code_challenge"] == [create_s256_code_challenge(request.verifier)]
    assert request.verifier not in repr(request)
    no_pkce = oauth.authorization_request(
        provider_for(emulator, "    pkce: false\n"), "http://127.0.0.1:1/cb"
    )
    assert "code_challenge" not in no_pkce.url and no_pkce.verifier is None


def test_python_login_helper(emulator: OAuthEmulator, tmp_path: Path) -> None:
    cfg = tmp_path / "providers.yaml"
    cfg.write_text(
        f"providers:\n  emu:\n    issuer: {emulator.url}\n"
        "    client_id: loopauth-demo\n    scope: openid email\n"
    )
    done: list = []
    original = Flow.start

    def start_and_answer(self: Flow) -> str:
        url = original(self)
        threading.Thread(target=browse, args=(url,)).start()
        return url

    Flow.start = start_and_answer  # type: ignore[method-assign]
    try:
        done.append(loopauth.login(config=str(cfg), open_browser=False))
    finally:
        Flow.start = original  # type: ignore[method-assign]
    assert done[0].account_label == "ada@example.test"
    assert loopauth.get_token("emu", config=str(cfg)).access_token == done[0].access_token
    refreshed = loopauth.refresh(config=str(cfg))
    assert refreshed.access_token != done[0].access_token
    assert refreshed.account_id == "user-1"


def test_a_login_imports_only_authlibs_protocol_pieces(config: Path) -> None:
    """authlib's requests client would pull in its OpenID client, joserfc and cryptography."""
    from loopauth.testing import login

    result = login("--config", str(config), "login", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    modules = {
        line.split("|")[-1].strip() for line in result.lines if line.startswith("import time:")
    }
    assert "authlib.oauth2.rfc6749.parameters" in modules  # the protocol functions are used
    heavy = ("joserfc", "cryptography", "authlib.integrations", "authlib.oidc", "authlib.jose")
    assert not {m for m in modules if m.startswith(heavy)}, sorted(modules)


def test_a_redirect_uri_without_a_path_is_sent_with_the_slash_it_is_served_at(
    emulator: OAuthEmulator,
) -> None:
    # As it always was: a registered `http://127.0.0.1/` keeps matching. (Microsoft's plugin,
    # whose registration has no path, sends it without: tests/test_microsoft.py.)
    flow = Flow(provider_for(emulator, "    redirect_uri: http://127.0.0.1"))
    flow.start()
    try:
        sent = parse_qs(urlsplit(flow.authorization_url or "").query)["redirect_uri"][0]
        assert urlsplit(sent).path == "/" and sent == flow.redirect_uri
    finally:
        flow.cancel()
