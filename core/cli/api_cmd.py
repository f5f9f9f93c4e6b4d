"""`loopauth api`: a call to the provider's API with the stored token, like `gh api`.

The provider type authorizes it (a Bearer token, or TikTok Shop's signature); the answer's JSON
is printed pretty on a terminal and compact when piped, every page of it with --paginate.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from ..errors import NoTokenError, ProviderError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    import requests

DESCRIPTION = """\
Call PROVIDER's API (its api_base_url) with the stored token, refreshed first when needed, and
print the answer: JSON pretty on a terminal, compact (one page a line) when piped.
PATH starts with /; when only one name is given it is PATH. The provider type authorizes the
call: a Bearer token, or for TikTok Shop app_key, timestamp, the access token header and the
signature over the query and the exact body bytes sent. A redirect is never followed. An HTTP
error or a TikTok Shop `code` other than 0: the answer on stdout, what went wrong on stderr,
exit 5.

  loopauth api github /user
  loopauth api tiktok-shop /authorization/202309/shops
  loopauth api tiktok-shop -X POST /product/202309/products/search -q page_size=50 \\
      -d '{"status": "ALL"}' --shop "Maomao beauty shop" --paginate
"""

USAGE = (
    "loopauth api [-h] [--config FILE] [-v] [PROVIDER] PATH [--account NAME] [-X METHOD] "
    "[-q KEY=VALUE]... [-d JSON|@FILE|@-] [--shop NAME|ID|CIPHER] [--paginate]"
)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add `api`'s options (PROVIDER, PATH and --account are added by the caller)."""
    parser.add_argument(
        "-X",
        "--method",
        metavar="METHOD",
        help="HTTP method (default: GET, or POST when -d is given)",
    )
    parser.add_argument(
        "-q",
        "--query",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a query parameter (repeat for more; the value may be empty)",
    )
    parser.add_argument(
        "-d",
        "--data",
        metavar="JSON|@FILE|@-",
        help="the JSON body, sent (and signed) byte for byte as given; @FILE reads a file, "
        "@- standard input",
    )
    parser.add_argument(
        "--shop",
        metavar="NAME|ID|CIPHER",
        help="TikTok Shop: one of the account's authorized shops; its shop_cipher is added",
    )
    parser.add_argument(
        "--paginate",
        action="store_true",
        help='fetch every page (TikTok\'s next_page_token, or Link: rel="next") and print each',
    )
    parser.add_argument(
        "--max-pages",
        type=int,
        default=None,
        metavar="N",
        help="with --paginate: stop with an error after N pages (default 1000)",
    )


def no_completion(**kwargs: object) -> list[str]:
    """TAB completes nothing for PATH: it is a path of the API, not a local file."""
    return []


def cmd_api(args: argparse.Namespace) -> int:
    """Send one call (or, with --paginate, every page of it) and print the answers."""
    from ..apiclient import MAX_PAGES, ApiError, pages, session
    from .commands import _config

    name, path = _target(args.provider, args.path)
    body = _body(args.data)
    method = args.method or ("POST" if body is not None else "GET")
    if not re.fullmatch(r"[A-Za-z]{1,20}", method):
        raise UsageError(f"-X {method!r} is not an HTTP method (GET, POST, PUT, DELETE...)")
    params = _query(args.query)
    provider = _config(args).select(name)
    if args.shop is not None and params.get("shop_cipher") == "":
        raise UsageError("--shop and an empty -q shop_cipher= contradict each other; give one")
    limit = MAX_PAGES if args.max_pages is None else args.max_pages
    if limit < 1:
        raise UsageError(f"--max-pages must be at least 1, not {limit}")
    tty = sys.stdout.isatty()
    try:
        # Inside the try: finding --shop's cipher is a call too, and may fail like any other.
        with session(provider, account=args.account, shop=args.shop) as api:
            for response in pages(
                api, method.upper(), path, params=params, data=body, max_pages=limit
            ):
                _show(response, tty)
                if not args.paginate:
                    break
    except ApiError as exc:
        if not exc.redirect:
            _show(exc.http_response, tty)
        print(f"loopauth: {exc}", file=sys.stderr)
        return exc.exit_code
    except (ProviderError, NoTokenError) as exc:
        # The provider type's own error (TikTok's code), or one that ended the authorization.
        answer = exc.response if isinstance(exc, ProviderError) else None
        cause = exc.__cause__
        if answer is None and isinstance(cause, ProviderError):
            answer = cause.response
        if answer is not None:
            _show_json(answer, tty)
        print(f"loopauth: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def _target(first: str | None, second: str | None) -> tuple[str | None, str]:
    """Return (PROVIDER or None, PATH) from the one or two names given."""
    name, path = (None, first) if second is None else (first, second)
    if path is None:
        raise UsageError(
            "api needs a PATH starting with /, e.g. loopauth api PROVIDER /path\n" + USAGE
        )
    if re.match(r"[A-Za-z]:/", path):  # Git Bash turned /path into C:/Program Files/Git/path
        raise UsageError(
            f"PATH {path[:100]!r} looks like a Windows path: Git Bash rewrites arguments that "
            "start with /; write the path without its first / or set MSYS_NO_PATHCONV=1"
        )
    if not path.startswith(("/", "http:", "https:")) and re.match(r"[\w.~-]+/", path):
        path = "/" + path  # like gh api: repos/x/y is /repos/x/y
    if not path.startswith("/") or path.startswith("//"):
        hint = (
            f"; for provider {path!r} give the path too: loopauth api {path} /path"
            if second is None and not path.startswith(("/", "http:", "https:"))
            else ""
        )
        raise UsageError(
            f"PATH must start with / (it is joined to the provider's api_base_url), "
            f"not {path[:100]!r}{hint}"
        )
    return name, path


def _query(items: list[str]) -> dict[str, str]:
    """Return -q KEY=VALUE items as parameters; a key given twice is an error."""
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"-q takes KEY=VALUE (the value may be empty), not {item!r}")
        if key in params:
            raise UsageError(
                f"-q {key} is given twice; put a repeated parameter in PATH's query string"
            )
        params[key] = value
    return params


def _body(data: str | None) -> bytes | None:
    """Return the bytes -d gives (JSON, @FILE or @-), checked to be JSON, unchanged."""
    if data is None:
        return None
    if data == "@-":
        body, where = sys.stdin.buffer.read(), "standard input"
    elif data.startswith("@"):
        try:
            with open(data[1:], "rb") as f:
                body = f.read()
        except OSError as exc:
            raise UsageError(
                f"-d {data}: cannot read {data[1:]!r}: {exc.strerror or exc}"
            ) from None
        where = data[1:]
    else:
        body, where = data.encode("utf-8", "surrogateescape"), "-d"
    try:
        text = body.decode("utf-8")  # what is signed and sent as application/json
    except UnicodeDecodeError:
        raise UsageError(
            f"{where} is not UTF-8 (a UTF-16 file, as Windows PowerShell's > writes?); save it "
            "as UTF-8"
        ) from None
    if text.startswith("\ufeff"):
        raise UsageError(f"{where} starts with a byte order mark; save it as UTF-8 without one")
    try:
        json.loads(text)
    except (ValueError, RecursionError) as exc:
        detail = f" ({exc})" if isinstance(exc, json.JSONDecodeError) else ""
        raise UsageError(f"{where} is not valid JSON{detail}") from None
    return body


def _show(response: requests.Response, tty: bool) -> None:
    """Print an answer's body: JSON pretty or compact, other text as is, binary only to a pipe."""
    from ..apiclient import NOT_JSON, decoded

    body = response.content
    if not body:
        return
    data = decoded(response)
    if data is not NOT_JSON:
        _show_json(data, tty)
        return
    out = sys.stdout
    buffer = getattr(out, "buffer", None)
    if not tty and buffer is not None:  # piped: the exact bytes, whatever they are
        out.flush()
        buffer.write(body)
        buffer.flush()
        return
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = "\0"
    if "\0" in text:
        kind = response.headers.get("content-type") or "no content type"
        print(
            f"loopauth: the answer is binary ({len(body)} bytes, {kind}); not printed on a "
            "terminal: send it to a file (> FILE)",
            file=sys.stderr,
        )
        return
    print(text, end="" if text.endswith("\n") else "\n")  # control characters escaped


def _show_json(data: Any, tty: bool) -> None:
    from ..terminal import json_text

    if tty:
        print(json_text(data, indent=2, ensure_ascii=False))
        return
    line = json_text(data, separators=(",", ":"), ensure_ascii=False) + "\n"
    out = sys.stdout
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        print(line, end="", flush=True)
        return
    # UTF-8 bytes, as JSON is: a Windows pipe's code page (cp1252) can't hold every name.
    out.flush()
    buffer.write(line.encode("utf-8"))
    buffer.flush()
