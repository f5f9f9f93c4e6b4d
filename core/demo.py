"""`make demo` (`python -m loopauth.demo`): the TikTok Shop plugin's demo, offline."""

from loopauth.plugins.tiktok_shop.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
