"""`make demo`: the Chilkat sample's whole job, offline, through the real CLI and listener.

Starts the TikTok Shop emulator, logs in with `loopauth login tiktok-shop --output
qa_data/tokens/tiktok-shops.json`, prints that seed-shaped JSON, then the authorized shops.
Opens the system browser when there is one; otherwise plays the seller by submitting the
emulator's consent form, as a person would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

from loopauth.emulator import browse

PROVIDER = "tiktok-shop"
OUTPUT = os.path.join("qa_data", "tokens", "tiktok-shops.json")
HOME = os.path.abspath(".loopauth-demo")
APP_KEY, APP_SECRET, SERVICE_ID = "demo-app-key", "demo-app-secret", "7301234567890123456"

CONFIG = """\
# Written by `make demo`: a tiktok-shop provider pointed at the local TikTok Shop emulator.
default: tiktok-shop
providers:
  tiktok-shop:
    plugin: tiktok_shop
    client_id: ${{TIKTOK_APP_KEY}}
    client_secret: ${{TIKTOK_APP_SECRET}}
    service_id: ${{TIKTOK_SERVICE_ID}}
    redirect_uri: http://localhost:{port}/
    # The emulator stands in for services.tiktokshop.com, auth.tiktok-shops.com and the Shop API.
    authorization_endpoint: {url}/open/authorize
    token_endpoint: {url}/api/v2/token/get
    refresh_endpoint: {url}/api/v2/token/refresh
    api_base_url: {url}
"""


def _redirect_port() -> int:
    """The seed's port 3017 when it is free, else any free one (the emulator is told which)."""
    for port in (3017, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port")


def main() -> int:
    """Run the demo; return the exit code of the login."""
    from .emulator import TikTokShopEmulator

    port = _redirect_port()
    os.makedirs(HOME, exist_ok=True)
    config = os.path.join(HOME, "providers.yaml")
    env = {
        **os.environ,
        "LOOPAUTH_HOME": HOME,
        "TIKTOK_APP_KEY": APP_KEY,
        "TIKTOK_APP_SECRET": APP_SECRET,
        "TIKTOK_SERVICE_ID": SERVICE_ID,
    }
    emulator = TikTokShopEmulator(
        app_key=APP_KEY,
        app_secret=APP_SECRET,
        service_id=SERVICE_ID,
        redirect_url=f"http://localhost:{port}/",
    )
    with emulator:
        with open(config, "w", encoding="utf-8") as f:
            f.write(CONFIG.format(url=emulator.url, port=port))
        print(f"demo: TikTok Shop emulator on {emulator.url}; config written to {config}")
        if port != 3017:
            print(f"demo: port 3017 is busy, so the redirect URL is http://localhost:{port}/")
        cli = [sys.executable, "-m", "loopauth", "--config", config]
        cmd = [*cli, "login", PROVIDER, "--output", OUTPUT]
        if os.environ.get("CI"):  # never pop a browser up on a CI machine or in the test suite
            cmd.append("--no-browser")
        print("demo: $ loopauth login tiktok-shop --output " + OUTPUT, flush=True)
        # stdin: not the terminal, so no paste prompt mixes into the demo's output.
        proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        assert proc.stderr is not None
        play_the_seller = False
        for line in proc.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()
            # loopauth itself decides whether a browser could be opened; when none was, the
            # demo answers the consent page as the seller would.
            if line.startswith("Open this URL in a browser"):
                play_the_seller = True
                print(
                    "demo: no browser was opened, so the demo plays the seller and clicks "
                    "Authorize",
                    file=sys.stderr,
                    flush=True,
                )
            elif play_the_seller and line.startswith("http"):
                threading.Thread(target=browse, args=(line.strip(),), daemon=True).start()
        code = proc.wait()
        if code != 0:
            print(f"demo: login failed with exit code {code}", file=sys.stderr)
            return code
        with open(OUTPUT, encoding="utf-8") as f:
            saved = json.load(f)
        print(f"\ndemo: the token JSON, saved to {os.path.abspath(OUTPUT)}:")
        print(json.dumps(saved, indent=2))
        print("\ndemo: $ loopauth shops tiktok-shop", flush=True)
        shops = subprocess.run([*cli, "shops", PROVIDER], env=env, check=False)
        print("\ndemo: $ loopauth status tiktok-shop", flush=True)
        subprocess.run([*cli, "status", PROVIDER], env=env, check=False)
    print(_how_to_use(config), flush=True)
    return shops.returncode


def _how_to_use(config: str) -> str:
    """How to reach the demo's token from the user's own shell (its home, config and app)."""
    import shlex

    program = os.path.join(os.path.dirname(sys.executable), "loopauth")
    if os.path.exists(program) and program.startswith(os.getcwd() + os.sep):
        program = os.path.relpath(program)
    elif not os.path.exists(program):
        program = "loopauth"
    q = shlex.quote
    # The demo's app key and "secret" are the emulator's made-up ones, nothing real.
    return (
        "\ndemo: the token is kept in the demo's own home. To use it from your shell (until it "
        "expires: the emulator has stopped, so it cannot be refreshed):\n"
        f"  export LOOPAUTH_HOME={q(HOME)} LOOPAUTH_CONFIG={q(config)}\n"
        f"  export TIKTOK_APP_KEY={APP_KEY} TIKTOK_APP_SECRET={APP_SECRET} "
        f"TIKTOK_SERVICE_ID={SERVICE_ID}\n"
        f"  {program} token            # the access token, for scripts\n"
        f"  {program} exec -- env | grep ACCESS_TOKEN   # or run a command with it\n"
        f"  {program} status"
    )


if __name__ == "__main__":
    raise SystemExit(main())
