"""Local stand-ins for authorization servers on loopback, and a scripted user, for tests and demos.

`server` is the HTTP plumbing every emulator builds on, `oauth` the standard OAuth2 / OpenID
emulator, `registry` its clients, users and grants, `browse` the user who answers consent pages.
"""

from __future__ import annotations

from ..pages import page
from .browse import BrowseResult, browse
from .oauth import OAuthEmulator
from .registry import EmulatorClient, EmulatorUser
from .server import EmulatorServer, RecordingServer, Request, Response, run

__all__ = [
    "BrowseResult",
    "EmulatorClient",
    "EmulatorServer",
    "EmulatorUser",
    "OAuthEmulator",
    "RecordingServer",
    "Request",
    "Response",
    "browse",
    "page",
    "run",
]
