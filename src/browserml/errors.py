"""Exception types with messages a user can act on.

Every expected failure raises a subclass of :class:`BrowserMLError`; the CLI prints its message as
one line and exits with :attr:`exit_code`. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class BrowserMLError(Exception):
    """Base class: an expected failure with a message written for the user."""

    exit_code = 1


class DatasetError(BrowserMLError):
    """The training data is missing, empty, single-class or unreadable."""


class ModelError(BrowserMLError):
    """A trained model or run directory is missing or not what the command needs."""


class FormatError(BrowserMLError):
    """A TF.js or TFLite file is malformed: bad JSON, missing or truncated shard, size mismatch."""


class IntegrityError(FormatError):
    """A file's bytes do not match the sha256 or size that its manifest promises."""


class VerificationError(BrowserMLError):
    """The browser's answers differ from the trained model's beyond tolerance."""


class BrowserError(BrowserMLError):
    """Headless Chromium is missing, failed to start, or a page script failed."""


class RegistryError(BrowserMLError):
    """A publish, promote or rollback cannot be done as asked."""


class InvalidValueError(RegistryError):
    """A request value (version, percent, body) is not one the API accepts: the caller's mistake
    (400), not a conflict with the registry's state (409)."""


class NotFoundError(RegistryError):
    """The model, version or channel does not exist."""


class InvalidNameError(RegistryError):
    """A model name is not ``[a-z0-9-]{1,64}``."""


class DatabaseError(BrowserMLError):
    """The database cannot be reached or its URL is not one BrowserML can use."""


class TelemetryError(BrowserMLError):
    """A telemetry batch or stats query is not what the API accepts."""


class TokenError(BrowserMLError):
    """The admin-token file is empty, blank or malformed, so the server refuses to start."""
