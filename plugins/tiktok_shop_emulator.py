"""The TikTok Shop emulator's earlier import path; it lives in `loopauth.plugins.tiktok_shop`."""

from loopauth.plugins.tiktok_shop.emulator import Seller, TikTokShopEmulator

__all__ = ["Seller", "TikTokShopEmulator"]
