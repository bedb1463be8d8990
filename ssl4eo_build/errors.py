"""The error hierarchy.

Every error a user can cause or fix (bad config, bad input file, changed config on a finished
stage, missing credentials) derives from :class:`UserError`; the CLI prints its message as one
paragraph and exits with code 2. Source errors are split into retryable and final so the
download stage knows whether to try again.
"""

from __future__ import annotations

import errno


class Ssl4eoError(Exception):
    """Base class of every error raised on purpose by ssl4eo-build."""


class UserError(Ssl4eoError):
    """Something the user can fix: the message says what was expected and where."""


class ConfigError(UserError):
    """A config file or command-line override is invalid."""


class InputError(UserError):
    """An input table (cities, reference index) has bad rows or columns."""


class ConfigChangedError(UserError):
    """A stage is re-run with a config that would change results already recorded."""


class ManifestError(UserError):
    """The manifest is missing, from an incompatible version, or inconsistent."""


class SourceError(Ssl4eoError):
    """A scene search or pixel fetch failed."""


class RetryableSourceError(SourceError):
    """Quota, server, timeout or connection errors: worth trying again after a pause."""

    def __init__(self, message: str, retry_after: float | None = None, quota: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.quota = quota


class FinalSourceError(SourceError):
    """Bad request or missing asset: trying again will give the same answer."""


class RequestTooLargeError(SourceError):
    """The server refused a pixel request for its size (``certain``: a retry as it is fails
    the same way), or ran out of memory or time on it (which may pass on a second try)."""

    def __init__(self, message: str, certain: bool = True) -> None:
        super().__init__(message)
        self.certain = certain


class CredentialsError(UserError):
    """Earth Engine credentials or the project are missing or refused."""


class WorkDirBusyError(UserError):
    """Another command holds the work directory's lock."""


class IncompleteError(Ssl4eoError):
    """A command stopped before its goal (e.g. `run` out of rounds): rerun to continue."""


class StorageError(UserError):
    """The disk refused a write: full, read-only or not permitted."""


_OS_ADVICE = {
    errno.ENOSPC: ("the disk is full", "free space (or point --work-dir/--out elsewhere)"),
    errno.EDQUOT: ("the disk quota is exhausted", "free space or raise the quota"),
    errno.EROFS: ("the filesystem is read-only", "use a writable --work-dir/--out"),
    errno.EACCES: ("permission denied", "fix the permissions or use another directory"),
    errno.EPERM: ("operation not permitted", "fix the permissions or use another directory"),
    errno.ENOTDIR: ("a path component is a file, not a directory", "choose another path"),
    errno.EISDIR: ("it is a directory, not a file", "name a file"),
}
STORAGE_ERRNOS = frozenset(_OS_ADVICE)


def describe_os_error(exc: OSError, action: str) -> str:
    """One paragraph: what failed on which file, what it means and what to do. Finished work
    is always kept (every write is atomic and recorded only once complete)."""
    where = exc.filename or "(unknown file)"
    meaning, advice = _OS_ADVICE.get(
        exc.errno or 0, (exc.strerror or str(exc), "check the path and the disk")
    )
    return (
        f"{where}: {action} failed: {meaning}. Finished work is kept; {advice}, then run the "
        "same command again to continue."
    )
