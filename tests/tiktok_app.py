"""The TikTok Shop app the tests register with the emulator (shared by several test files)."""

from __future__ import annotations

from loopauth.plugins.tiktok_shop.emulator import TikTokShopEmulator

KEY, SECRET, SERVICE = "test-app-key", "test-app-secret-0077", "7301234567890123456"


def make_emulator(port: int, **options: object) -> TikTokShopEmulator:
    """A TikTok Shop emulator that knows the test app, redirecting to localhost:`port`."""
    return TikTokShopEmulator(
        app_key=KEY,
        app_secret=SECRET,
        service_id=SERVICE,
        redirect_url=f"http://localhost:{port}/",
        **options,
    )  # type: ignore[arg-type]
