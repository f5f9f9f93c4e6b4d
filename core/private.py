"""Private files and folders: made 0700/0600 without predictable names, checked before trust.

Kept import-light: the cached-token path checks the files it reads with these functions.
"""

from __future__ import annotations

import os
import stat

from .errors import StoreWriteError, UnsafePath

POSIX = os.name == "posix"


_SHA256: list[object] = []


def sha256(data: bytes) -> str:
    """Return the SHA-256 hex digest of `data`, without importing hashlib (it loads OpenSSL)."""
    if not _SHA256:
        # The built-in implementation: _sha2 on 3.12+, _sha256 before; both are tiny C modules.
        for name in ("_sha2", "_sha256", "hashlib"):
            try:
                _SHA256.append(__import__(name).sha256)
                break
            except ImportError:
                continue
    return str(_SHA256[0](data).hexdigest())  # type: ignore[operator]


def problem(path: str, *, follow: bool = False) -> str | None:
    """Return why `path` is not private to this user, or None (always None off POSIX).

    Raises OSError (FileNotFoundError...) when it cannot be looked at.
    """
    if not POSIX:  # Windows: the per-user profile's ACL keeps other users out
        return None
    return problem_of(os.stat(path) if follow else os.lstat(path))


def problem_of(st: os.stat_result) -> str | None:
    """Return why a file with this (l)stat is not private to this user, or None."""
    if not POSIX:
        return None
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if st.st_uid != os.geteuid():
        return f"is owned by another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return "is writable by group or others"
    return None


def refusal(path: str, why: str, what: str = "") -> UnsafePath:
    """Return the error for an unsafe path: what it is, why, and how to fix it."""
    if "writable" in why:
        fix = f"if nobody else could have changed it, run: chmod go-w {path}"
    elif "symbolic" in why:
        fix = "replace the link with a real file or folder of your own"
    else:
        fix = "remove it (it may have been planted), and keep LOOPAUTH_HOME private to you"
    name = f"{what} {path}" if what else path
    return UnsafePath(f"{name} {why}; loopauth does not trust it: {fix}")


def lock(path: str, timeout: float) -> Lock:
    """Return a cross-process lock at `path`; a planted link or another user's file is refused.

    Re-entrant within a thread, exclusive between threads and processes.
    """
    try:
        why = problem(path)
    except FileNotFoundError:
        why = None
    if why and "writable" in why:
        os.chmod(path, 0o600)  # our own lock left open by an old version or umask: just close it
    elif why:  # opening it would truncate (or lock) whatever it points to
        raise refusal(path, why, "lock file")
    if not POSIX:
        return _FileLockLock(path, timeout)
    return FlockLock(path, timeout)


class LockTimeout(StoreWriteError):
    """The lock was not free within the timeout (another process is stuck holding it)."""


class Lock:
    """What `lock` returns: acquire/release, and a context manager."""

    def acquire(self) -> None:
        """Wait for the lock (raises LockTimeout)."""
        raise NotImplementedError

    def release(self) -> None:
        """Release one acquisition."""
        raise NotImplementedError

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class _FileLockLock(Lock):
    """filelock where flock(2) does not exist (Windows); its Timeout becomes LockTimeout."""

    def __init__(self, path: str, timeout: float) -> None:
        from filelock import FileLock

        self.path, self.timeout = path, timeout
        self._lock = FileLock(path, timeout=timeout, mode=0o600)

    def acquire(self) -> None:
        """Wait for the lock (raises LockTimeout)."""
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            raise LockTimeout(_stuck(self.path, self.timeout)) from None

    def release(self) -> None:
        """Release one acquisition."""
        self._lock.release()


class FlockLock(Lock):
    """flock(2) on a lock file: what filelock does on POSIX, and so compatible with it.

    filelock itself takes ~40 ms to import; 64 processes waiting for one refresh would spend
    more time importing it than waiting, so the cached-token path uses this instead.
    """

    def __init__(self, path: str, timeout: float) -> None:
        import threading

        self.path, self.timeout = path, timeout
        self._thread = threading.RLock()  # other threads wait; the owner may re-enter
        self._fd: int | None = None
        self._count = 0

    def __repr__(self) -> str:
        return f"FlockLock({self.path!r}, held={self._count})"

    def acquire(self) -> None:
        """Wait (polling, with back-off) until this process holds the file's lock."""
        import time

        if not self._thread.acquire(timeout=self.timeout):
            raise LockTimeout(_stuck(self.path, self.timeout))
        try:
            if self._count == 0:
                self._fd = self._take(time.monotonic() + self.timeout)
            self._count += 1
        except BaseException:
            self._thread.release()
            raise

    def _take(self, deadline: float) -> int:
        import fcntl
        import time

        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags, 0o600)
        delay = 0.001
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(_stuck(self.path, self.timeout)) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.02)  # a waiter notices a release within 20 ms
        except BaseException:
            os.close(fd)
            raise

    def release(self) -> None:
        """Release one acquisition; the last one unlocks the file (which stays, as filelock's)."""
        self._count -= 1
        if self._count == 0 and self._fd is not None:
            import fcntl

            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        self._thread.release()


def make_dirs(path: str) -> None:
    """Create `path` and any missing parents 0700, whatever the umask; existing ones are left be."""
    path = os.path.abspath(path)
    missing = []
    current = path
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            continue
        if POSIX:  # mkdir's mode is filtered by the umask; 0700 exactly
            os.chmod(folder, 0o700)


def own_dir(path: str, *, follow: bool = False) -> None:
    """Create one of loopauth's own folders if needed, and make sure it is private (0700)."""
    make_dirs(path)
    secure_dir(path, follow=follow)


def secure_dir(path: str, *, follow: bool = False) -> None:
    """Make one of loopauth's own folders 0700; refuse another user's folder, or a link.

    `follow` accepts a link (for the data home, which a user may keep elsewhere).
    """
    if not POSIX:
        return
    st = os.stat(path) if follow else os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise refusal(path, "is a symbolic link", "the folder")
    if st.st_uid != os.geteuid():
        raise refusal(path, f"is owned by another user (uid {st.st_uid})", "the folder")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


def write(path: str, data: bytes, *, sync_folder: bool = True) -> None:
    """Write `data` to `path` atomically: a 0600 temp file beside it, fsync, os.replace.

    Without `sync_folder` the caller syncs the folder itself (once for a batch: `sync`).
    """
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    # mkstemp: O_EXCL with a random name, so no planted file or link is ever written through.
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if sync_folder:
        _fsync_dir(folder)


def sync(folder: str) -> None:
    """Make the renames in `folder` durable (after writes with `sync_folder=False`)."""
    _fsync_dir(folder)


def _replace(tmp: str, path: str) -> None:
    # On Windows a reader holding the file open makes os.replace fail for a moment: retry.
    for attempt in range(20):
        try:
            os.replace(tmp, path)
            return
        except PermissionError:
            if os.name != "nt" or attempt == 19:
                raise
            import time

            time.sleep(0.05)


def _fsync_dir(folder: str) -> None:
    if not POSIX:  # directories can't be opened for fsync on Windows
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def read(path: str, limit: int, what: str = "", *, folder: bool = True) -> bytes:
    """Read at most `limit` + 1 bytes of a file after checking it (and its `folder`) are private.

    The file is opened without following links and checked through that descriptor, so what
    was checked is what is read (and one system call fewer than lstat-then-open: `status`
    reads 10,000 of these).
    """
    if folder:
        parent = os.path.dirname(os.path.abspath(path))
        why = problem(parent, follow=True)
        if why:
            raise refusal(parent, why, "the folder")
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        if not isinstance(exc, FileNotFoundError) and POSIX and os.path.islink(path):
            raise refusal(path, "is a symbolic link", what) from None
        raise
    try:
        st = os.fstat(fd)
        why = problem_of(st)
        if why:
            raise refusal(path, why, what)
        chunks = []
        size = 0
        want = min(limit + 1, st.st_size + 1)  # one read for a file that does not change
        while size <= limit:
            chunk = os.read(fd, want)
            chunks.append(chunk)
            size += len(chunk)
            if len(chunk) < want:  # a short read of a regular file is its end
                break
            want = limit + 1 - size
        return b"".join(chunks)
    finally:
        os.close(fd)


def _stuck(path: str, timeout: float) -> str:
    return (
        f"{path} stayed locked for {timeout:g} s: another loopauth process is refreshing this "
        "token and seems stuck; try again, or end that process"
    )
