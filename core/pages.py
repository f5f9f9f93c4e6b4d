"""The self-contained pages loopauth serves, and the headers every listener answer carries."""

from __future__ import annotations

import html

# Nothing may load from anywhere: no scripts, no images, no fonts, no framing.
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": f"{_CSP}; form-action 'none'",  # the listener's pages: no forms
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# For pages with a form (an emulator's consent page). No form-action: browsers apply it to the
# redirects after the submission too, and those lead to whatever loopback port the app chose.
FORM_SECURITY_HEADERS = {**SECURITY_HEADERS, "Content-Security-Policy": _CSP}

_STYLE = """
:root { color-scheme: light dark; --ok: #1a7f37; --bad: #c62828; --fg: #1f2328; --muted: #59636e;
        --bg: #f6f8fa; --card: #ffffff; --border: #d1d9e0; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --muted: #9198a1; --bg: #0d1117; --card: #151b23; --border: #3d444d;
          --ok: #3fb950; --bad: #f85149; } }
* { box-sizing: border-box; }
body { margin: 0; min-height: 100vh; display: grid; place-items: center; background: var(--bg);
       color: var(--fg); font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { width: min(32rem, calc(100vw - 2rem)); background: var(--card); padding: 2.25rem 2rem;
       border: 1px solid var(--border); border-radius: 12px; text-align: center;
       box-shadow: 0 8px 24px rgba(0,0,0,.08); }
.mark { width: 3.5rem; height: 3.5rem; margin: 0 auto 1rem; border-radius: 50%; display: grid;
        place-items: center; font-size: 1.9rem; font-weight: 700; color: #fff; }
.ok .mark { background: var(--ok); } .bad .mark { background: var(--bad); }
h1 { font-size: 1.35rem; margin: 0 0 .5rem; }
p { margin: .4rem 0; color: var(--muted); }
strong { color: var(--fg); }
code { font: .9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
       word-break: break-word; }
.detail { display: inline-block; margin: .25rem 0; padding: .35rem .6rem; border-radius: 6px;
          background: var(--bg); border: 1px solid var(--border); color: var(--fg); }
footer { margin-top: 1.5rem; font-size: .8rem; color: var(--muted); }
select, button { font: inherit; } button { margin: .25rem; padding: .35rem 1rem; }
"""


def page(title: str, body_html: str, *, kind: str = "", mark: str = "") -> str:
    """Wrap already-escaped HTML in loopauth's self-contained page; `title` is plain text."""
    title = html.escape(title, quote=False)
    main = f'<main class="{kind}">' if kind else "<main>"
    mark_html = f'<div class="mark" aria-hidden="true">{mark}</div>' if mark else ""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="no-referrer"><title>{title} · loopauth</title>'
        f"<style>{_STYLE}</style></head>\n<body>{main}"
        f"{mark_html}<h1>{title}</h1>\n{body_html}\n"
        "<footer>loopauth</footer></main></body></html>\n"
    )


def _page(kind: str, mark: str, title: str, lines: list[str]) -> str:
    return page(title, "\n".join(f"<p>{line}</p>" for line in lines), kind=kind, mark=mark)


def _custom(template: str, values: dict[str, str]) -> str:
    # Plain replacement, not str.format: custom pages are full of CSS braces.
    for key, value in values.items():
        template = template.replace("{" + key + "}", html.escape(value))
    return template


def success(provider: str, account: str, template: str | None = None) -> str:
    """Return the page shown after a successful login."""
    if template:
        return _custom(template, {"provider": provider, "account": account})
    return _page(
        "ok",
        "&#10003;",
        "You're signed in",
        [
            f"loopauth is now authorized for <strong>{html.escape(provider)}</strong> "
            f"as <strong>{html.escape(account)}</strong>.",
            "You can close this tab and return to your terminal.",
        ],
    )


def failure(provider: str, error: str, template: str | None = None, *, denied: bool = False) -> str:
    """Return the page shown when the login failed or was denied (`error` is escaped)."""
    if template:
        return _custom(template, {"provider": provider, "error": error})
    name = f"<strong>{html.escape(provider)}</strong>"
    lead = (
        f"loopauth was not authorized for {name}."
        if denied
        else f"loopauth could not finish signing in to {name}."
    )
    return _page(
        "bad",
        "&#10005;",
        "Access denied" if denied else "Sign-in did not complete",
        [
            lead,
            f'<code class="detail">{html.escape(error)}</code>',
            "You can close this tab; your terminal says what to do next.",
        ],
    )


def notice(title: str, text: str) -> str:
    """Return a small page for requests that do not end the flow (wrong state, stray paths)."""
    return _page("bad", "!", title, [html.escape(text)])
