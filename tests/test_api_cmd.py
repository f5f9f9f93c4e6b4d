"""`loopauth api`: signed TikTok Shop calls and Bearer calls from the shell, against emulators."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from tiktok_app import KEY, SECRET, SERVICE

import loopauth
from loopauth.apiclient import ApiSession, pages
from loopauth.emulator import OAuthEmulator, RecordingServer, Request, Response
from loopauth.errors import NoTokenError, ProviderError, UsageError
from loopauth.plugins.tiktok_shop.emulator import TikTokShopEmulator, tiktok_config
from loopauth.provider import Provider, ProviderType
from loopauth.store import Store, TokenStore
from loopauth.testing import cli, login, write_config

ENV = {"TIKTOK_APP_SECRET": SECRET}
SHOPS = "/authorization/202309/shops"
SEARCH = "/product/202309/products/search"
BEAUTY = {"name": "Maomao beauty shop", "id": "7000714532876273420"}
BEAUTY_CIPHER = "GCP_XF90igAAAABh00qsWgtvOiGFNqyubMt3"
HOME_CIPHER = "ROW_xkMbgAAAeVAQra0eZWebFQq5aIK"


Recorder = RecordingServer  # a tiny API: answers from the request, keeps each in `seen`


@pytest.fixture
def shop(tmp_path: Path, tiktok: TikTokShopEmulator, port: int) -> Path:
    """A providers.yaml for the TikTok emulator, with the seller logged in."""
    cfg = tiktok_config(
        tmp_path / "providers.yaml", tiktok.url, port, client_id=KEY, service_id=SERVICE
    )
    result = login("--config", str(cfg), "login", env=ENV)
    assert result.returncode == 0, result.stderr
    return cfg


def api(cfg: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `loopauth --config CFG api ARGS` with stdout piped."""
    return cli("--config", str(cfg), "api", *args, env=ENV, input=input)


def search_calls(tiktok: TikTokShopEmulator) -> list[dict[str, Any]]:
    return [c for c in tiktok.api_calls if c["path"] == SEARCH]


# -- TikTok Shop ---------------------------------------------------------------------------


def test_get_prints_tiktoks_answer_compact_when_piped(
    shop: Path, tiktok: TikTokShopEmulator
) -> None:
    out = api(shop, SHOPS)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\n") == 1 and '"code":0,' in out.stdout  # one compact line
    answer = json.loads(out.stdout)
    assert [s["name"] for s in answer["data"]["shops"]] == ["Maomao beauty shop", "Maomao home"]
    [call] = tiktok.api_calls
    assert call["sign_valid"] and {"app_key", "timestamp", "sign"} <= set(call["params"])
    assert "shop_cipher" not in call["params"]
    verbose = cli("--config", str(shop), "-v", "api", SHOPS, env=ENV)
    token = TokenStore().find("tiktok-shop")
    for secret in (SECRET, token.access_token, token.refresh_token or "-"):
        assert secret not in verbose.stdout + verbose.stderr


def test_post_with_a_signed_body_for_a_shop_named(shop: Path, tiktok: TikTokShopEmulator) -> None:
    out = api(
        shop,
        "-X",
        "POST",
        SEARCH,
        "-q",
        "page_size=10",
        "-d",
        '{"status":"ALL"}',
        "--shop",
        "Maomao beauty shop",
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)["data"]
    assert len(data["products"]) == 10 and data["total_count"] == 25 and data["next_page_token"]
    assert all(p["title"].startswith("Maomao beauty shop ") for p in data["products"])
    [call] = search_calls(tiktok)
    assert call["method"] == "POST" and call["sign_valid"] and "shop_cipher" in call["params"]


@pytest.mark.parametrize(
    ("shop_arg", "title"),
    [
        (BEAUTY["id"], "Maomao beauty shop"),
        (BEAUTY_CIPHER, "Maomao beauty shop"),
        ("maomao BEAUTY shop", "Maomao beauty shop"),
        (HOME_CIPHER, "Maomao home"),
        ("Maomao home", "Maomao home"),
    ],
)
def test_shop_by_id_cipher_or_name_in_any_case(shop: Path, shop_arg: str, title: str) -> None:
    # PROVIDER before the options and PATH after them; -d alone makes it a POST.
    out = api(shop, "tiktok-shop", "--shop", shop_arg, SEARCH, "-q", "page_size=5", "-d", "{}")
    assert out.returncode == 0, out.stderr
    products = json.loads(out.stdout)["data"]["products"]
    assert len(products) == 5 and all(p["title"].startswith(f"{title} ") for p in products)


def test_body_bytes_are_sent_and_signed_exactly_as_given(shop: Path, tmp_path: Path) -> None:
    body = tmp_path / "filter.json"
    body.write_bytes(b'{ "status" :  "ALL" }\n')  # spaces and a newline TikTok must see
    for data, stdin in ((f"@{body}", None), ("@-", '\t{"status": "ALL"}  \n')):
        out = api(
            shop, SEARCH, "--shop", "Maomao home", "-q", "page_size=3", "-d", data, input=stdin
        )
        assert out.returncode == 0, out.stderr
        assert len(json.loads(out.stdout)["data"]["products"]) == 3
    out = api(
        shop, SEARCH, "--shop", "Maomao home", "-q", "page_size=3", "-q", "page_token=", "-d", "{}"
    )
    assert out.returncode == 0, out.stderr  # an empty value is sent, and signed as key + nothing
    bad = api(shop, SEARCH, "-d", "{status: ALL}")
    assert bad.returncode == 2 and "-d is not valid JSON" in bad.stderr


def test_an_unknown_shop_is_exit_2_naming_the_shops(shop: Path, tiktok: TikTokShopEmulator) -> None:
    out = api(shop, SEARCH, "-q", "page_size=5", "-d", "{}", "--shop", "Maomao garden")
    assert out.returncode == 2 and out.stdout == ""
    assert "has no authorized shop named 'Maomao garden'" in out.stderr
    assert "Maomao beauty shop (id 7000714532876273420" in out.stderr
    assert "Maomao home (id" in out.stderr
    assert search_calls(tiktok) == []  # nothing was sent without a shop


def test_shops_are_cached_privately_and_asked_again_for_a_new_name(
    shop: Path, tiktok: TikTokShopEmulator, isolated: Path
) -> None:
    def shop_lists() -> int:
        return sum(c["path"] == SHOPS for c in tiktok.api_calls)

    for name in ("Maomao home", "Maomao beauty shop", BEAUTY["id"]):
        assert api(shop, SEARCH, "--shop", name, "-q", "page_size=1", "-d", "{}").returncode == 0
    assert shop_lists() == 1
    [cache] = (isolated / "cache").glob("shops-*.json")
    assert json.loads(cache.read_text())["shops"][0]["cipher"] == BEAUTY_CIPHER
    if os.name == "posix":
        assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert api(shop, SEARCH, "--shop", "not there", "-d", "{}").returncode == 2
    assert shop_lists() == 2  # a name the cache lacks: TikTok is asked before saying no


def test_paginate_prints_every_page(shop: Path, tiktok: TikTokShopEmulator) -> None:
    out = api(
        shop, SEARCH, "-q", "page_size=10", "-d", '{"status":"ALL"}', "--shop", "Maomao home",
        "--paginate",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    answers = [json.loads(line) for line in out.stdout.splitlines()]  # one compact page a line
    assert [len(p["data"]["products"]) for p in answers] == [10, 10, 5]
    ids = {product["id"] for p in answers for product in p["data"]["products"]}
    assert len(ids) == answers[0]["data"]["total_count"] == 25
    assert [p["data"]["next_page_token"] == "" for p in answers] == [False, False, True]
    calls = search_calls(tiktok)
    assert len(calls) == 3 and all(c["sign_valid"] and c["code"] == 0 for c in calls)
    assert ["page_token" in c["params"] for c in calls] == [False, True, True]
    without = api(shop, SEARCH, "-q", "page_size=10", "-d", "{}", "--shop", "Maomao home")
    assert len(without.stdout.splitlines()) == 1 and len(search_calls(tiktok)) == 4


def test_an_error_envelope_is_exit_5_with_the_answer_on_stdout(
    shop: Path, tiktok: TikTokShopEmulator
) -> None:
    out = api(shop, SEARCH, "-q", "page_size=0", "-d", "{}", "--shop", "Maomao home")
    assert out.returncode == 5
    answer = json.loads(out.stdout)
    assert answer["code"] == 36009004 and answer["request_id"]
    assert "36009004" in out.stderr and "Invalid page_size" in out.stderr
    assert f"request_id {answer['request_id']}" in out.stderr
    wrong = cli("--config", str(shop), "api", SHOPS, env={"TIKTOK_APP_SECRET": "not-the-secret"})
    assert wrong.returncode == 5 and json.loads(wrong.stdout)["code"] == 106001
    assert "106001" in wrong.stderr and "not-the-secret" not in wrong.stdout + wrong.stderr


def test_an_expired_token_is_refreshed_before_the_call(
    shop: Path, tiktok: TikTokShopEmulator
) -> None:
    path = Path(TokenStore().path_for("tiktok-shop", TokenStore().find("tiktok-shop").account))
    data = json.loads(path.read_text())
    data["expires_at"] = time.time() - 10
    path.write_text(json.dumps(data))
    tiktok.expire_access_tokens()
    out = api(shop, SHOPS)
    assert out.returncode == 0, out.stderr
    assert tiktok.token_calls == ["/api/v2/token/get", "/api/v2/token/refresh"]
    assert [c["code"] for c in tiktok.api_calls] == [0]  # refreshed first, not after a 105002


def test_a_redirect_is_not_followed_and_names_only_the_host(
    tmp_path: Path, tiktok: TikTokShopEmulator, port: int
) -> None:
    with (
        Recorder(lambda req: Response(200, {"stolen": True})) as target,
        Recorder(lambda req: Response.redirect(f"{target.url}/steal?x=secret-ish", 302)) as api_,
    ):
        cfg = tiktok_config(
            tmp_path / "providers.yaml", tiktok.url, port, client_id=KEY, service_id=SERVICE
        )
        cfg.write_text(
            cfg.read_text().replace(f"api_base_url: {tiktok.url}", f"api_base_url: {api_.url}")
        )
        assert login("--config", str(cfg), "login", env=ENV).returncode == 0
        out = api(cfg, SHOPS)
        assert out.returncode == 5 and out.stdout == ""
        host = target.url.removeprefix("http://")
        assert f"HTTP 302: the API answered with a redirect to {host}; not followed" in out.stderr
        assert "/steal" not in out.stderr and "secret-ish" not in out.stderr
        assert target.seen == [] and len(api_.seen) == 1


def test_no_token_is_exit_6(tmp_path: Path, tiktok: TikTokShopEmulator, port: int) -> None:
    cfg = tiktok_config(
        tmp_path / "providers.yaml", tiktok.url, port, client_id=KEY, service_id=SERVICE
    )
    out = api(cfg, SHOPS)
    assert out.returncode == 6 and "loopauth login tiktok-shop" in out.stderr
    assert tiktok.api_calls == []


def test_path_and_options_are_checked(shop: Path) -> None:
    for args, words in [
        ((), "api needs a PATH"),
        (("tiktok-shop",), "give the path too: loopauth api tiktok-shop /path"),
        (("C:/Program Files/Git/authorization/202309/shops",), "set MSYS_NO_PATHCONV=1"),
        (("/authorization/../shops",), "has a . or .. segment"),
        (("/authorization/%2e%2e/shops",), "has a . or .. segment"),
        ((SHOPS, "--shop", "Maomao home", "-q", "shop_cipher="), "contradict each other"),
        ((SHOPS, "--paginate", "--max-pages", "0"), "--max-pages must be at least 1"),
        ((SHOPS, "-q", "page_size"), "-q takes KEY=VALUE"),
        ((SHOPS, "-q", "a=1", "-q", "a=2"), "-q a is given twice"),
        ((SHOPS, "-X", "GE T"), "is not an HTTP method"),
        ((SHOPS, "-d", "@no-such-file"), "cannot read 'no-such-file'"),
        (("nope", SHOPS), "no provider named 'nope'"),
    ]:
        out = api(shop, *args)
        assert out.returncode == 2 and words in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a POSIX pseudo-terminal")
def test_pretty_json_on_a_terminal(shop: Path) -> None:
    import select

    master, terminal = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopauth", "--config", str(shop), "api", SHOPS],
        stdout=terminal,
        stderr=subprocess.PIPE,
        env={**os.environ, **ENV},
    )
    os.close(terminal)
    seen = b""
    try:
        while select.select([master], [], [], 20)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # Linux: the other end closed
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    assert proc.wait(20) == 0
    text = seen.decode().replace("\r\n", "\n")
    assert text.startswith('{\n  "code": 0,\n') and '\n        "name": "Maomao home",' in text
    assert json.loads(text)["data"]["shops"][1]["cipher"] == HOME_CIPHER


def test_python_session_for_a_shop_and_its_pages(
    shop: Path, tiktok: TikTokShopEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIKTOK_APP_SECRET", SECRET)
    with loopauth.session("tiktok-shop", config=str(shop), shop="Maomao home") as session:
        found = [
            product["id"]
            for page in session.pages(
                "POST", SEARCH, params={"page_size": "10"}, json={"status": "ALL"}
            )
            for product in page.json()["data"]["products"]
        ]
        assert len(set(found)) == 25 and len(search_calls(tiktok)) == 3
        assert session.get(SHOPS).json()["code"] == 0
        with pytest.raises(UsageError, match="sends its token only to api_base_url"):
            session.get("https://example.com/steal")
    with pytest.raises(UsageError, match="has no authorized shop named 'Nowhere'"):
        loopauth.session("tiktok-shop", config=str(shop), shop="Nowhere")


# -- generic OAuth2 providers: a Bearer token --------------------------------------------------


def bearer_config(path: Path, emulator: OAuthEmulator, api_base_url: str | None) -> Path:
    base = f"    api_base_url: {api_base_url}\n" if api_base_url else ""
    return write_config(
        path,
        f"""
providers:
  emu:
    issuer: {emulator.url}
    client_id: loopauth-demo
    scope: openid profile email
"""
        + base,
    )


def bearer_login(cfg: Path) -> str:
    result = login("--config", str(cfg), "login")
    assert result.returncode == 0, result.stderr
    return TokenStore().find("emu").access_token


def test_bearer_call_to_userinfo(tmp_path: Path, emulator: OAuthEmulator) -> None:
    cfg = bearer_config(tmp_path / "providers.yaml", emulator, emulator.url)
    bearer_login(cfg)
    for args in (("emu", "/userinfo"), ("/userinfo",)):  # the only provider is the default
        out = cli("--config", str(cfg), "api", *args)
        assert out.returncode == 0, out.stderr
        assert set(json.loads(out.stdout)) == {"sub", "name", "email"}


def test_an_expired_bearer_token_is_refreshed_before_the_call(
    tmp_path: Path, emulator: OAuthEmulator
) -> None:
    cfg = bearer_config(tmp_path / "providers.yaml", emulator, emulator.url)
    bearer_login(cfg)
    token = TokenStore().find("emu")
    path = Path(TokenStore().path_for("emu", token.account))
    data = json.loads(path.read_text())
    data["expires_at"] = time.time() - 10
    path.write_text(json.dumps(data))
    emulator.log.clear()
    out = cli("--config", str(cfg), "api", "/userinfo")
    assert out.returncode == 0, out.stderr
    calls = [c for c in emulator.log if c[1] != "/.well-known/openid-configuration"]
    assert calls == [("POST", "/token"), ("GET", "/userinfo")]  # the refresh, then one call
    assert TokenStore().find("emu").access_token != token.access_token


def test_an_invalid_token_is_refreshed_once_and_sent_again(
    tmp_path: Path, emulator: OAuthEmulator
) -> None:
    cfg = bearer_config(tmp_path / "providers.yaml", emulator, emulator.url)
    old = bearer_login(cfg)
    emulator.expire_access_tokens()  # still fresh on our side: the 401 tells
    out = cli("--config", str(cfg), "api", "/userinfo")
    assert out.returncode == 0, out.stderr
    assert [c["grant_type"] for c in emulator.token_calls][-1] == "refresh_token"
    assert TokenStore().find("emu").access_token != old
    emulator.expire_access_tokens()
    emulator.revoke_refresh_tokens()
    dead = cli("--config", str(cfg), "api", "/userinfo")
    assert dead.returncode == 6 and "loopauth login emu" in dead.stderr


def test_http_errors_are_exit_5_with_the_body(tmp_path: Path, emulator: OAuthEmulator) -> None:
    cfg = bearer_config(tmp_path / "providers.yaml", emulator, emulator.url)
    bearer_login(cfg)
    out = cli("--config", str(cfg), "api", "/no-such-api")
    assert out.returncode == 5 and json.loads(out.stdout)["error"] == "not_found"
    assert "loopauth: emu: HTTP 404 Not Found: not_found: no route /no-such-api" in out.stderr


def test_a_provider_without_api_base_url_or_shops(tmp_path: Path, emulator: OAuthEmulator) -> None:
    cfg = bearer_config(tmp_path / "providers.yaml", emulator, None)
    out = cli("--config", str(cfg), "api", "/userinfo")
    assert out.returncode == 2 and "emu has no api_base_url" in out.stderr
    cfg = bearer_config(tmp_path / "providers.yaml", emulator, emulator.url)
    bearer_login(cfg)
    out = cli("--config", str(cfg), "api", "/userinfo", "--shop", "x")
    assert out.returncode == 2 and "emu (plugin oauth2) has no shops" in out.stderr


def _items(req: Request) -> Response:
    """Pages linked by `Link: rel="next"`: /items has 3; /loop's page 2 names itself as next;
    /away's next page is at another origin."""
    page = int(req.query.get("page", "1"))
    following = {
        "/items": f"/items?page={page + 1}" if page < 3 else None,
        "/loop": "/loop?page=2",
        "/away": f"{req.query.get('to')}/items",
    }[req.path]
    headers = {"Link": f'<{following}>; rel="next"'} if following else {}
    return Response(200, {"page": page, "items": [page * 10 + i for i in range(3)]}, headers)


@pytest.fixture
def paged(tmp_path: Path, emulator: OAuthEmulator) -> Iterator[tuple[Path, Recorder]]:
    with Recorder(_items) as server:
        cfg = bearer_config(tmp_path / "providers.yaml", emulator, server.url)
        yield cfg, server


def test_paginate_follows_link_next_with_the_token(
    paged: tuple[Path, Recorder], emulator: OAuthEmulator
) -> None:
    cfg, server = paged
    token = bearer_login(cfg)
    out = cli("--config", str(cfg), "api", "/items", "--paginate")
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["page"] for line in out.stdout.splitlines()] == [1, 2, 3]
    assert [r.headers.get("authorization") for r in server.seen] == [f"Bearer {token}"] * 3


def test_paginate_refuses_another_origin_and_a_loop(
    paged: tuple[Path, Recorder], emulator: OAuthEmulator
) -> None:
    cfg, _ = paged
    bearer_login(cfg)
    with Recorder(_items) as elsewhere:
        out = cli("--config", str(cfg), "api", "/away", "-q", f"to={elsewhere.url}", "--paginate")
        assert out.returncode == 5 and json.loads(out.stdout)["page"] == 1
        assert (
            "the next page's link points to 127.0.0.1" in out.stderr
            and "not followed" in out.stderr
        )
        assert elsewhere.seen == []
    out = cli("--config", str(cfg), "api", "/loop", "--paginate")
    assert out.returncode == 5 and len(out.stdout.splitlines()) == 2
    assert "named a page already fetched" in out.stderr


# -- a provider type's own session and paging (in process) ------------------------------------


class _Stamped(ApiSession):
    """A type's own session: it authorizes with a header of its own, naming the shop."""

    def __init__(self, provider: Provider, shop: str | None) -> None:
        super().__init__(provider)
        self.headers["X-Mine"] = f"shop={shop}"


def test_type_api_session() -> None:
    made: list[dict[str, Any]] = []

    def api_session(
        provider: Provider, *, account: str | None, store: Store, shop: str | None
    ) -> ApiSession:
        made.append({"provider": provider.name, "account": account, "shop": shop})
        return _Stamped(provider, shop)

    with Recorder(lambda req: Response(200, {"ok": True})) as server:
        mine = Provider("mine", ProviderType("mine", api_session=api_session), {})
        mine.settings["api_base_url"] = server.url
        with loopauth.session(mine, account="a1", shop="s1", store=TokenStore()) as session:
            assert session.get("/things").json() == {"ok": True}
        assert made == [{"provider": "mine", "account": "a1", "shop": "s1"}]
        assert server.seen[0].headers["x-mine"] == "shop=s1"
        assert "authorization" not in server.seen[0].headers
        plain = Provider("plain", ProviderType("plain"), {"api_base_url": server.url})
        with pytest.raises(UsageError, match="plain \\(plugin plain\\) has no shops"):
            loopauth.session(plain, shop="s1", store=TokenStore())
        with pytest.raises(NoTokenError):  # the standard session: a Bearer token, none stored
            loopauth.session(plain, store=TokenStore())
        assert len(made) == 1


def _cursor_pages(req: Request) -> Response:
    """Pages by `cursor` in the JSON (and a Link header the type's own paging must ignore)."""
    cursor = int(req.query.get("cursor", "0"))
    nxt = {"/things": str(cursor + 1) if cursor < 2 else "", "/stuck": "7", "/endless": ""}
    following = nxt[req.path] or (str(cursor + 1) if req.path == "/endless" else "")
    body = {"cursor": cursor, "next": following, "body": req.body.decode()}
    return Response(200, body, {"Link": '</elsewhere>; rel="next"'})


def test_type_next_page() -> None:
    def next_page(params: Mapping[str, str], response: Any) -> dict[str, str] | None:
        following = response.get("next") if isinstance(response, dict) else None
        return {**params, "cursor": following} if following else None

    with Recorder(_cursor_pages) as server:
        mine = Provider("mine", ProviderType("mine", api_session=_plain, next_page=next_page), {})
        mine.settings["api_base_url"] = server.url
        with loopauth.session(mine, store=TokenStore()) as session:
            got = [
                page.json()
                for page in pages(session, "POST", "/things", params={"n": "1"}, json={"a": 1})
            ]
            assert [p["cursor"] for p in got] == [0, 1, 2]
            assert {p["body"] for p in got} == {'{"a": 1}'}  # the body goes with every page
            assert all(r.query.get("n") == "1" for r in server.seen)  # other parameters kept
            with pytest.raises(ProviderError, match="named a page already fetched"):
                list(pages(session, "GET", "/stuck"))
            with pytest.raises(ProviderError, match="more than 5 pages; stopped"):
                list(pages(session, "GET", "/endless", max_pages=5))
        assert not any(r.path == "/elsewhere" for r in server.seen)


def _plain(provider: Provider, **options: Any) -> ApiSession:
    return ApiSession(provider)


def test_a_path_without_its_first_slash_works_like_gh_api(shop: Path) -> None:
    out = api(shop, "tiktok-shop", SHOPS.lstrip("/"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["data"]["shops"]


def test_a_body_that_is_not_utf8_is_refused(shop: Path, tmp_path: Path) -> None:
    utf16 = tmp_path / "filter.json"
    utf16.write_bytes('{"status": "ALL"}'.encode("utf-16"))  # PowerShell 5's `>`
    out = api(shop, SEARCH, "-q", "page_size=5", "-d", f"@{utf16}", "--shop", BEAUTY_CIPHER)
    assert out.returncode == 2 and "is not UTF-8" in out.stderr
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + b'{"status": "ALL"}')
    out = api(shop, SEARCH, "-q", "page_size=5", "-d", f"@{bom}", "--shop", BEAUTY_CIPHER)
    assert out.returncode == 2 and "byte order mark" in out.stderr


def test_max_pages_stops_paging(paged: tuple[Path, Recorder]) -> None:
    cfg, _ = paged
    bearer_login(cfg)
    out = cli("--config", str(cfg), "api", "/items", "--paginate", "--max-pages", "2")
    assert out.returncode == 5 and len(out.stdout.splitlines()) == 2
    assert "more than 2 pages" in out.stderr and "--max-pages N" in out.stderr


def test_piped_json_is_utf8_whatever_the_code_page(tmp_path: Path, emulator: OAuthEmulator) -> None:
    """A Windows pipe's code page can't hold every shop name: JSON goes out as UTF-8."""
    answer = {"shops": [{"name": "\u7f8e\u5986 \u0160op"}]}
    with Recorder(lambda req: Response(200, answer)) as server:
        cfg = bearer_config(tmp_path / "providers.yaml", emulator, server.url)
        bearer_login(cfg)
        out = subprocess.run(
            [sys.executable, "-m", "loopauth", "--config", str(cfg), "api", "/names"],
            capture_output=True,
            env={**os.environ, "PYTHONIOENCODING": "cp1252"},
            timeout=60,
        )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.decode("utf-8")) == answer
