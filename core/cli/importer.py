"""`loopauth import`: store tokens from files users already have, checked like a live answer."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator

from ..errors import AccessDenied, LoopauthError, ProviderError, UsageError
from ..provider import Provider
from ..store import MAX_TOKEN_FILE, Store
from ..token import Token, is_token_text

BATCH = 500  # tokens written per index update: bounded memory for 10,000 files


def _read(name: str) -> tuple[bytes, float]:
    """Return a file's bytes (at most 1 MiB) and when it was written (now for stdin)."""
    if name == "-":
        return sys.stdin.buffer.read(MAX_TOKEN_FILE + 1), time.time()
    import stat

    fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ValueError("is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device must not hang or flood us
            raise ValueError("is not a regular file")
        # Its size, not 1 MiB, for each of 10,000 small files (a size of 0 may still hold data).
        want = MAX_TOKEN_FILE + 1 if not 0 < st.st_size <= MAX_TOKEN_FILE else st.st_size + 1
        chunks, size = [], 0
        while size < want and (chunk := os.read(fd, want - size)):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), st.st_mtime
    finally:
        os.close(fd)  # also when it is a folder: os.fdopen would have left it open


def parse_file(provider: Provider, data: bytes, written: float, account: str | None) -> Token:
    """Return the token a saved token response holds, dated by when the file was written."""
    from .. import oauth

    if len(data) > MAX_TOKEN_FILE:
        raise ValueError("is larger than 1 MiB")
    try:
        answer = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError("is not JSON") from None
    if not isinstance(answer, dict):
        raise ValueError("is not a JSON object")
    parse = provider.type.parse_token_response or oauth.standard_token
    token = parse(provider, answer, None)
    for value in (token.access_token, token.refresh_token or ""):
        if not is_token_text(value):
            raise ValueError("holds a token with characters no token can have")
    # A relative expires_in counts from when the response was saved, not from now.
    age = max(0.0, time.time() - written)
    if "expires_in" in answer and token.expires_at is not None:
        token.expires_at -= age
    relative_refresh = ("refresh_expires_in", "refresh_token_expires_in")
    if token.refresh_expires_at is not None and any(k in answer for k in relative_refresh):
        token.refresh_expires_at -= age
    token.obtained_at = written
    token.provider = provider.name
    named = provider.type.account_for(provider, token, {}) if provider.type.account_for else None
    claims = token.extra.get("id_token_claims")
    if named is not None:
        token.account_id, token.account_label = named.id, named.label
    elif isinstance(claims, dict) and claims.get("sub"):
        label = claims.get("email") or claims.get("preferred_username") or claims.get("name")
        token.account_id, token.account_label = str(claims["sub"]), str(label) if label else None
    else:
        token.account_id = account or "default"
    token.bound_to = oauth.binding(provider, network=False)
    return token


def _names(files: list[str]) -> Iterator[str]:
    if files.count("-") > 1:
        raise UsageError("standard input (-) can be read only once")
    yield from files


def import_files(
    provider: Provider,
    store: Store,
    files: list[str],
    *,
    account: str | None,
    replace: bool = False,
) -> int:
    """Import each file, reporting each; a bad one does not stop the rest; exit 2 if any failed.

    An account already stored keeps its token unless the file's is certainly newer (a later
    absolute expiry) or `replace` says so: the stored one may hold a rotated refresh token.
    """
    from .output import when

    err = sys.stderr
    store.check_writable(provider.name)
    bar = None
    if err.isatty() and len(files) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(files), file=getattr(err, "raw", err), unit="file", leave=False)

    def say(line: str) -> None:
        if bar is not None:
            bar.write(line, file=err)
        else:
            print(line, file=err, flush=True)

    def stored_line(name: str, token: Token, what: str = "stored") -> None:
        if bar is not None:
            return
        # The id too: two shops may share a name, and the id is what --account takes.
        label, account_id = token.account_label, token.account
        who = f"{label} ({account_id})" if label and label != account_id else account_id
        say(
            f"{name}: {what} {provider.name} account {who}; access token expires "
            f"{when(token.expires_at)}"
        )

    batch: dict[str, tuple[str, Token]] = {}  # new accounts, written together
    stored = failed = kept = 0

    def flush() -> None:
        nonlocal stored
        store.save_many(token for _, token in batch.values())
        for name, token in batch.values():
            stored_line(name, token)
        stored += len(batch)
        batch.clear()

    for name in _names(files):
        shown = "(standard input)" if name == "-" else name
        try:
            data, written = _read(name)
            token = parse_file(provider, data, written, account)
        except OSError as exc:
            failed += 1
            say(f"{shown}: not imported: cannot read it ({exc.strerror or exc})")
        except ValueError as exc:
            failed += 1
            say(f"{shown}: not imported: {exc}")
        except ProviderError as exc:  # an error answer, or another provider's kind of answer
            failed += 1
            say(f"{shown}: not imported: holds no token: {exc}")
        except AccessDenied as exc:  # a token for another kind of account (a TikTok creator's)
            failed += 1
            say(f"{shown}: not imported: {exc}")
        else:
            if token.account in batch:
                earlier = batch[token.account][0]
                if not _newer(token, batch[token.account][1], replace):
                    kept += 1
                    say(f"{shown}: not imported: {earlier} holds a newer token of {token.account}")
                else:
                    kept += 1
                    say(f"{earlier}: not imported: {shown} holds a newer token of {token.account}")
                    batch[token.account] = (shown, token)
            else:
                # Decided and written under the account's lock: a refresh running meanwhile
                # (its rotated refresh token is the only one that still works) is never undone.
                with store.lock(provider.name, token.account):
                    try:
                        previous: Token | None = store.read(provider.name, token.account)
                    except LoopauthError:  # none, or damaged: the file's replaces it
                        previous = None
                    if previous is None:
                        batch[token.account] = (shown, token)
                    elif _newer(token, previous, replace):
                        store.save(token)
                        stored += 1
                        stored_line(shown, token, "replaced the stored token of")
                    else:
                        kept += 1
                        say(
                            f"{shown}: not imported: {token.account} already has a token that "
                            "is not older (use --replace to overwrite it)"
                        )
                if len(batch) >= BATCH:
                    flush()
        if bar is not None:
            bar.update(1)
    if batch:
        flush()
    if bar is not None:
        bar.close()
    print(
        f"import: {stored} stored, {kept} kept (a token at least as new was there), "
        f"{failed} failed, of {len(files)} files",
        file=err,
    )
    return 2 if failed else 0


def _newer(token: Token, other: Token, replace: bool) -> bool:
    """Return True when `token` should replace `other`: asked to, or certainly newer."""
    if replace:
        return True
    if "expires_in" in token.raw:  # dated by a file time: not certain enough to replace
        return False
    return (token.expires_at or 0) > (other.expires_at or 0)
