"""google-auth-oauthlib's installed-app login, as the rival in the whole-login comparison.

Run by cmp_login.py with the wheel venv's interpreter:
    python google_login.py CLIENT_ID AUTH_URI TOKEN_URI OUT_FILE
with BENCH_CLIENT_SECRET, BROWSER (the scripted browser) and OAUTHLIB_INSECURE_TRANSPORT=1 (the
emulator is plain http on loopback) in the environment. Writes the credentials' JSON to OUT_FILE
(0600), as loopauth saves its token.
"""

from __future__ import annotations

import os
import sys

from google_auth_oauthlib.flow import InstalledAppFlow


def main(argv: list[str]) -> int:
    """Log in through the system browser (`webbrowser`, hence $BROWSER) and save the token."""
    client_id, auth_uri, token_uri, out = argv
    config = {
        "installed": {
            "client_id": client_id,
            "client_secret": os.environ["BENCH_CLIENT_SECRET"],
            "auth_uri": auth_uri,
            "token_uri": token_uri,
            "redirect_uris": ["http://localhost"],
        }
    }
    flow = InstalledAppFlow.from_client_config(config, scopes=["openid", "email"])
    creds = flow.run_local_server(port=0, open_browser=True, authorization_prompt_message=None)
    tmp = f"{out}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(creds.to_json())
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
