"""Errors raised by the memory tier."""

from __future__ import annotations

__all__ = [
    "InvalidCursorError",
    "InvalidKeyError",
    "InvalidValueError",
    "MemoryFullError",
    "MemoryStoreError",
    "SchemaVersionError",
    "ScopeViolationError",
]


class MemoryStoreError(Exception):
    """Base class of every error raised by a memory backend."""


class InvalidKeyError(MemoryStoreError, ValueError):
    """A fact key, document path or prefix is not acceptable (empty, too long, control chars)."""


class InvalidValueError(MemoryStoreError, ValueError):
    """A value is not JSON-serialisable as stored (nothing was written)."""


class InvalidCursorError(MemoryStoreError, ValueError):
    """A pagination cursor was not produced by this library."""


class ScopeViolationError(MemoryStoreError, RuntimeError):
    """A backend returned a record that belongs to another scope. It was withheld, not returned.

    This is always a bug in the backend; it is logged at ERROR level on the
    ``agenthood_mw.memory`` logger.
    """


class MemoryFullError(MemoryStoreError):
    """A bounded backend (``InMemoryBackend``) has no room for another record in this scope."""


class SchemaVersionError(MemoryStoreError, RuntimeError):
    """The database schema is newer than this version of agenthood-mw understands."""
