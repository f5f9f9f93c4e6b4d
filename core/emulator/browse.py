"""A scripted user for the emulators' pages: answer the first form, follow the redirects."""

from __future__ import annotations

import html
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from email.message import Message
from html.parser import HTMLParser
from typing import Any

__all__ = ["MAX_HOPS", "BrowseResult", "browse"]

MAX_HOPS = 10


@dataclass
class BrowseResult:
    """The final response `browse` saw, plus every redirect target it followed."""

    status: int
    url: str
    body: str
    headers: dict[str, str]
    hops: list[str]


@dataclass
class _Form:
    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    selects: list[tuple[str, list[tuple[str, str, bool]]]] = field(default_factory=list)
    buttons: list[tuple[str, str, str]] = field(default_factory=list)  # name, value, label


class _FormParser(HTMLParser):
    """Collect the first <form> of a page: fields, selects and submit buttons."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.form: _Form | None = None
        self._in_form = False
        self._select: tuple[str, list[tuple[str, str, bool]]] | None = None
        self._open: tuple[str, dict[str, str]] | None = None  # element whose text is collected
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Track form elements inside the first form."""
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.form is None:
            self.form = _Form(a.get("action", ""), a.get("method", "get").lower())
            self._in_form = True
        if not self._in_form or self.form is None or "disabled" in a:
            return
        if tag == "option":
            self._close()  # </option> is optional
        if tag == "input":
            kind, name, value = a.get("type", "text").lower(), a.get("name", ""), a.get("value", "")
            if kind in ("submit", "image"):
                self.form.buttons.append((name, value, value))
            elif kind in ("checkbox", "radio"):
                if name and "checked" in a:
                    self.form.fields.append((name, value or "on"))
            elif name and kind not in ("button", "reset", "file"):
                self.form.fields.append((name, value))
        elif tag in ("option", "button", "textarea"):
            self._open, self._text = (tag, a), []
        elif tag == "select":
            self._select = (a.get("name", ""), [])

    def handle_data(self, data: str) -> None:
        """Collect text of the open option, button or textarea."""
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        """Finish open elements."""
        if self._open is not None and tag in (self._open[0], "select"):
            self._close()
        if tag == "select" and self._select is not None and self.form is not None:
            self.form.selects.append(self._select)
            self._select = None
        elif tag == "form":
            self._in_form = False

    def _close(self) -> None:
        if self._open is None or self.form is None:
            return
        (tag, a), raw = self._open, "".join(self._text)
        self._open, text = None, " ".join(raw.split())
        if tag == "option" and self._select is not None:
            self._select[1].append((a.get("value", text), text, "selected" in a))
        elif tag == "button" and a.get("type", "submit").lower() == "submit":
            self.form.buttons.append((a.get("name", ""), a.get("value", ""), text))
        elif tag == "textarea" and a.get("name"):
            self.form.fields.append((a["name"], raw))


_DECISION_WORDS = {
    "allow": {"allow", "authorize", "authorise", "approve", "accept", "grant", "consent", "yes"},
    "deny": {"deny", "cancel", "reject", "decline", "refuse", "no"},
}


def _pick_button(form: _Form, decision: str) -> tuple[str, str, str]:
    wanted = {decision.lower()} | _DECISION_WORDS.get(decision.lower(), set())
    for button in form.buttons:
        name, value, label = (s.strip().lower() for s in button)
        texts = {name, value, label} - {""}
        if (texts | {t.split()[0] for t in texts}) & wanted:
            return button
    raise ValueError(f"no submit button matches decision {decision!r}")


def _submission(
    url: str, form: _Form, decision: str, account: str | None
) -> tuple[str, bytes | None]:
    """Fill in the form the way a user would; return the target URL and POST body."""
    fields = list(form.fields)
    for name, options in form.selects:
        if not name or not options:
            continue
        chosen = next((o for o in options if account is not None and account in (o[0], o[1])), None)
        chosen = chosen or next((o for o in options if o[2]), options[0])
        fields.append((name, chosen[0]))
    name, value, _ = _pick_button(form, decision)
    if name:
        fields.append((name, value))
    target = urllib.parse.urljoin(url, form.action or url)
    encoded = urllib.parse.urlencode(fields)
    if form.method == "post":
        return target, encoded.encode()
    parts = urllib.parse.urlsplit(target)
    return urllib.parse.urlunsplit(parts._replace(query=encoded)), None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        """Refuse, so every 3xx surfaces as an HTTPError we follow (and record) ourselves."""
        return None


def _fetch(
    opener: urllib.request.OpenerDirector, url: str, data: bytes | None, timeout: float
) -> tuple[int, Message, bytes]:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"refusing to browse non-HTTP URL {url!r}")
    headers = {"User-Agent": "loopauth-browse", "Accept": "text/html,*/*"}
    if data is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - scheme checked
    try:
        resp = opener.open(req, timeout=timeout)
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()
    with resp:
        return int(resp.status), resp.headers, resp.read()


def _follow_launch_page(url: str) -> str:
    """Read a local page (loopauth's launch page) and return where its meta refresh leads."""
    from urllib.request import url2pathname

    with open(url2pathname(urllib.parse.urlsplit(url).path), encoding="utf-8") as f:
        text = f.read()
    found = re.search(r'http-equiv="refresh" content="\d+;url=([^"]+)"', text)
    if found is None:
        raise ValueError(f"{url} does not forward anywhere")
    return html.unescape(found.group(1))


def browse(
    url: str,
    *,
    decision: str = "allow",
    account: str | None = None,
    timeout: float = 10.0,
    stop_at: str | None = None,
) -> BrowseResult:
    """Act as a user: open `url`, answer its form with `decision`, follow redirects.

    A redirect whose target starts with `stop_at` is recorded but not fetched; the result then
    is that 3xx response with `url` set to the target (handy when nothing listens there).
    """
    # An explicit empty ProxyHandler: loopback traffic must not go through *_proxy settings.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    if urllib.parse.urlsplit(url).scheme == "file":
        url = _follow_launch_page(url)
    hops: list[str] = []
    data: bytes | None = None
    submitted = False
    while True:
        status, msg, raw = _fetch(opener, url, data, timeout)
        data = None
        try:
            body = raw.decode(msg.get_content_charset() or "utf-8", "replace")
        except LookupError:
            body = raw.decode("utf-8", "replace")
        headers = dict(msg.items())
        location = msg.get("Location")
        if 300 <= status < 400 and location:
            if len(hops) >= MAX_HOPS:
                raise RuntimeError(f"more than {MAX_HOPS} redirects, last {url}")
            url = urllib.parse.urljoin(url, location)
            hops.append(url)
            if stop_at is not None and url.startswith(stop_at):
                return BrowseResult(status, url, body, headers, hops)
            continue
        form = None
        if not submitted and "html" in msg.get_content_type():
            parser = _FormParser()
            parser.feed(body)
            parser.close()
            form = parser.form
        if form is None:
            return BrowseResult(status, url, body, headers, hops)
        submitted = True
        url, data = _submission(url, form, decision, account)
