"""Fuzzed providers.yaml documents and provider answers, with fixed seeds: a configuration
error (exit 2) or a typed provider error, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopauth.config import parse
from loopauth.errors import ConfigError, ProviderError
from loopauth.oauth import standard_token
from loopauth.plugins.tiktok_shop.auth import parse_token_response
from loopauth.provider import BASE_SETTINGS

FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            "${X}",
            "${HOME}",
            "${A:-b}",
            "$$",
            "http://x",
            "https://a.example",
            "http://127.0.0.1:0/cb",
            "oauth2",
            "tiktok_shop",
            "${",
            "}",
        ]
    ),
)
KEYS = st.one_of(
    st.sampled_from(
        [*BASE_SETTINGS, "plugin", "service_id", "region", "default", "providers", "api_base_url"]
    ),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=20,
)
DOCS = st.one_of(
    VALUES,
    st.fixed_dictionaries(
        {
            "providers": st.dictionaries(
                st.text(max_size=10), st.dictionaries(KEYS, VALUES, max_size=8), max_size=3
            )
        },
        optional={"default": SCALARS},
    ),
)


def check(text: str) -> None:
    try:
        config = parse(text, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml")
        return
    for name in config.names():
        try:
            config.select(name)
        except ConfigError:
            pass


@FUZZ
@given(DOCS)
def test_structured_documents(doc: Any) -> None:
    check(yaml.safe_dump(doc, allow_unicode=True))


@FUZZ
@given(
    st.text(
        alphabet=st.one_of(
            st.sampled_from(list("providers:default -[]{}&*!|>'\"#%@`,?\n\t x1$\\")),
            st.characters(),
        ),
        max_size=300,
    )
)
def test_raw_text(text: str) -> None:
    check(text)


def test_fuzzed_documents_through_the_cli(tmp_path: Path) -> None:
    import random

    rng = random.Random(42)
    pieces = [
        "providers:",
        "\n  a:",
        "\n    plugin: ",
        "oauth2",
        "tiktok_shop",
        "\n    issuer: ",
        "https://a.example",
        "\n    client_id: ",
        "${NOPE}",
        "[",
        "]",
        "{",
        "&x",
        "*x",
        "\n  - ",
        "!!python/object:os.system",
        "\x00",
        "\ufeff",
        ": :",
        "\t",
    ]
    for i in range(15):
        cfg = tmp_path / f"f{i}.yaml"
        cfg.write_bytes("".join(rng.choice(pieces) for _ in range(rng.randint(1, 14))).encode())
        out = subprocess.run(
            [sys.executable, "-m", "loopauth", "--config", str(cfg), "token"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode in (2, 6), (cfg.read_bytes(), out.stderr)
        assert "Traceback" not in out.stderr and out.stderr.startswith("loopauth: ")


PROVIDER = parse(
    "providers:\n  s:\n    plugin: tiktok_shop\n    client_id: k\n"
    "    client_secret: s\n    service_id: '7301'\n  g:\n"
    "    issuer: https://a.example\n    client_id: c\n"
)

JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.text(max_size=20),
        st.floats(allow_nan=True, allow_infinity=True),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=15,
)
FIELDS = [
    "access_token",
    "refresh_token",
    "access_token_expire_in",
    "refresh_token_expire_in",
    "open_id",
    "seller_name",
    "granted_scopes",
    "user_type",
    "expires_in",
    "token_type",
    "scope",
    "id_token",
    "error",
]
ANSWERS = st.one_of(
    st.dictionaries(st.sampled_from(["code", "message", "data", "request_id"]), JSON),
    st.fixed_dictionaries(
        {
            "code": st.one_of(st.integers(), st.text(max_size=8), JSON),
            "data": st.dictionaries(st.sampled_from(FIELDS), JSON),
        }
    ),
    st.dictionaries(st.sampled_from(FIELDS), JSON),
)


@FUZZ
@given(ANSWERS)
def test_odd_token_answers_are_typed_errors(answer: dict[str, Any]) -> None:
    for name in ("s", "g"):
        provider = PROVIDER.select(name)
        try:
            token = parse_token_response(
                provider=provider, response=answer, previous=None
            ) or standard_token(provider, answer, None)
        except ProviderError:
            continue
        assert isinstance(token.access_token, str) and token.access_token
        for when in (token.expires_at, token.refresh_expires_at):
            assert when is None or 0 <= when < 253402300800
        json.dumps(token.to_dict(), allow_nan=False)  # storable as strict JSON


@pytest.mark.parametrize(
    ("envelope", "message"),
    [
        ({"code": 36004005}, "36004005: (no message)"),
        ({"code": "36004001", "message": "expired"}, "36004001: expired"),
        ({"code": -1, "message": "x" * 50}, "TikTok Shop error -1"),
        ({"code": 1.5}, "without a numeric `code`"),
        ({"code": None, "data": {}}, "without a numeric `code`"),
        ({"code": 0, "data": []}, "without a `data` object"),
        (
            {"code": 0, "message": "success", "data": {"access_token": ["a"]}},
            "malformed access_token",
        ),
    ],
)
def test_odd_tiktok_envelopes_through_the_cli(
    envelope: dict[str, Any], message: str, tmp_path: Path, isolated: Path
) -> None:
    from loopauth.emulator import EmulatorServer, Request, Response
    from loopauth.store import TokenStore
    from loopauth.testing import cli, write_config
    from loopauth.token import Token

    class Odd(EmulatorServer):
        def route(self, req: Request) -> Response:
            return Response(200, json.dumps(envelope))

    with Odd() as odd:
        cfg = write_config(
            tmp_path / "p.yaml",
            f"""
            providers:
              shop:
                plugin: tiktok_shop
                client_id: k
                client_secret: s
                service_id: "7301"
                refresh_endpoint: {odd.url}/api/v2/token/refresh
        """,
        )
        TokenStore().save(
            Token(
                "old",
                provider="shop",
                account_id="me",
                refresh_token="r",
                expires_at=time.time() - 1,
            )
        )
        path = Path(TokenStore().path_for("shop", "me"))
        before = path.read_bytes()
        out = cli("--config", str(cfg), "token")
    assert "Traceback" not in out.stderr
    if message.startswith(
        ("36004005", "36004001")
    ):  # a dead refresh token: log in again, remembered as such
        assert out.returncode == 6 and message in out.stderr, out.stderr
        assert "run: loopauth login shop --account me" in out.stderr
        after = TokenStore().find("shop", "me")
        assert (after.access_token, after.refresh_token, after.dead) == ("old", "r", message)
        return
    assert out.returncode == 5 and message in out.stderr, out.stderr
    assert path.read_bytes() == before
