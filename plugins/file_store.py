"""The built-in file store (`store: file`, the default), registered like any store plugin."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from loopauth import hookimpl
from loopauth.store import Store, TokenStore
from loopauth.stores import StoreType


def _open(url: str, options: Mapping[str, Any]) -> Store:
    return TokenStore()


FILE = StoreType(
    "file",
    _open,
    description="one 0600 JSON file per account under $LOOPAUTH_HOME/tokens (the default)",
)


@hookimpl
def register_stores(register: Callable[[StoreType], None]) -> None:
    """Register the file store."""
    register(FILE)
