"""The error hierarchy.

Every error a user can cause or fix (bad config, bad input file, changed config on a finished
stage, missing credentials) derives from :class:`UserError`; the CLI prints its message as one
paragraph and exits with code 2. Source errors are split into retryable and final so the
download stage knows whether to try again.
"""

from __future__ import annotations


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


class CredentialsError(UserError):
    """Earth Engine credentials or the project are missing or refused."""
