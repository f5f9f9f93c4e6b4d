"""Every error loopauth reports, each with the CLI exit code it maps to.

- 0: ok
- 1: internal error (a bug) or misuse of the Python API: LoopauthError
- 2: usage, configuration or environment: UsageError, ConfigError, IncompleteConfig,
  ListenError, PortBusy, StoreWriteError, UnsafePath
- 3: access denied: AccessDenied
- 4: timed out or cancelled: FlowTimeout, FlowCancelled
- 5: the provider answered an error, garbage, or not at all: ProviderError
- 6: no usable stored token, log in (again): NoTokenError, StoreError
"""

from __future__ import annotations


class LoopauthError(Exception):
    """Base class for every error loopauth reports (exit 1: a bug, or misuse of the API)."""

    exit_code = 1


class UsageError(LoopauthError):
    """The command line was wrong."""

    exit_code = 2


class ConfigError(LoopauthError):
    """providers.yaml (or a setting in it) is wrong."""

    exit_code = 2

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None, key: str = ""
    ) -> None:
        self.message, self.file, self.line, self.key = message, file, line, key
        # The single problems a combined error ("3 problems:") lists; empty for a single one.
        self.parts: list[ConfigError] = []
        where = file or ""
        if file and line:
            where = f"{file}:{line}"
        prefix = ": ".join(p for p in (where, key) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class IncompleteConfig(ConfigError):
    """A provider's settings name environment variables that are not set (exit 2 when used).

    Not broken: `status`, `providers` and `logout` work without them, and say what is missing.
    `provider` is the provider without those settings, for commands that never send them.
    """

    def __init__(
        self,
        message: str,
        *,
        variables: tuple[str, ...],
        provider: object | None = None,
        file: str | None = None,
        line: int | None = None,
        key: str = "",
    ) -> None:
        self.variables, self.provider = variables, provider
        super().__init__(message, file=file, line=line, key=key)


class AccessDenied(LoopauthError):
    """The user (or the provider) refused the authorization."""

    exit_code = 3


class FlowTimeout(LoopauthError):
    """No redirect arrived in time."""

    exit_code = 4


class FlowCancelled(LoopauthError):
    """The flow was cancelled (Ctrl+C, SIGTERM or cancel())."""

    exit_code = 4


class ProviderError(LoopauthError):
    """The provider answered with an error, garbage, or not at all."""

    exit_code = 5

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        description: str | None = None,
        grant_rejected: bool | None = None,
    ) -> None:
        self.error, self.description = error, description
        # The refresh token (or code) is dead for good: only a new login helps (RFC 6749 §5.2).
        self.grant_rejected = error == "invalid_grant" if grant_rejected is None else grant_rejected
        # The provider's JSON answer, when there was one (Chilkat's AccessTokenResponse on error).
        self.response: dict[str, object] | None = None
        super().__init__(message)


class NoTokenError(LoopauthError):
    """No usable token is stored; the message says which login to run."""

    exit_code = 6


class ListenError(LoopauthError):
    """The redirect URI's host or port cannot be listened on."""

    exit_code = 2


class PortBusy(ListenError):
    """The redirect URI's fixed port is taken."""


class StoreError(LoopauthError):
    """A token file is damaged or unreadable (log in again to replace it)."""

    exit_code = 6


class StoreWriteError(StoreError):
    """Tokens cannot be written where LOOPAUTH_HOME points."""

    exit_code = 2


class UnsafePath(LoopauthError):
    """A file or folder loopauth would trust is not private to this user."""

    exit_code = 2
