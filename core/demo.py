"""`make demo`: a whole login against the built-in emulator, through the real CLI and listener.

Opens the system browser when there is one; otherwise plays the user itself by submitting the
emulator's consent form, as a person would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from .emulator import OAuthEmulator, browse

PROVIDER = "emulator"
OUTPUT = os.path.join("qa_data", "tokens", "emulator.json")


def _has_browser() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main() -> int:
    """Start the emulator, run `loopauth login`, print the saved token JSON."""
    config = os.path.abspath("providers.yaml")
    env = dict(os.environ)
    env.setdefault("LOOPAUTH_HOME", os.path.abspath(".loopauth-demo"))
    with OAuthEmulator() as emulator:
        env["LOOPAUTH_EMULATOR_URL"] = emulator.url
        print(f"demo: emulator of an OpenID provider on {emulator.url}", flush=True)
        interactive = _has_browser() and not os.environ.get("CI")
        cmd = [
            sys.executable,
            "-m",
            "loopauth",
            "--config",
            config,
            "login",
            PROVIDER,
            "--output",
            OUTPUT,
            "--timeout",
            "300" if interactive else "60",
        ]
        if not interactive:
            cmd.append("--no-browser")
            print(
                "demo: no desktop browser here, so the demo plays the user and clicks Allow",
                flush=True,
            )
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            if not interactive and line.startswith("http"):
                url = line.strip()
                threading.Thread(target=browse, args=(url,), daemon=True).start()
        code = proc.wait()
        if code != 0:
            print(f"demo: login failed with exit code {code}", file=sys.stderr)
            return code
        print(f"\ndemo: the provider's token response, saved to {OUTPUT}:")
        with open(OUTPUT, encoding="utf-8") as f:
            print(json.dumps(json.load(f), indent=2))
        print("\ndemo: `loopauth token` now prints the stored access token:")
        subprocess.run(
            [sys.executable, "-m", "loopauth", "--config", config, "token", PROVIDER],
            env=env,
            check=True,
        )
        subprocess.run(
            [sys.executable, "-m", "loopauth", "--config", config, "status", PROVIDER],
            env=env,
            check=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
