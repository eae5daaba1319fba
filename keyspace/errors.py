"""The error family of quick, rooted in :class:`QuickError`.

Storage failures carry FoundationDB's numeric error code and name, the same on every
engine, so retry logic and callers can branch on ``err.code`` without knowing which
engine raised it. The root lives here, in the lowest layer, so every layer above can
subclass it; ``quick`` re-exports it.
"""

from __future__ import annotations

__all__ = [
    "QuickError",
    "StorageError",
    "StoreFull",
    "EngineUnavailable",
    "InvalidURL",
    "ERROR_NAMES",
    "RETRYABLE_CODES",
    "MAYBE_COMMITTED_CODES",
]

#: FoundationDB error codes quick raises or may receive, with FoundationDB's own names
#: (``flow/include/flow/error_definitions.h``).
ERROR_NAMES: dict[int, str] = {
    1004: "timed_out",
    1007: "transaction_too_old",
    1009: "future_version",
    1020: "not_committed",
    1021: "commit_unknown_result",
    1025: "transaction_cancelled",
    1029: "watch_cancelled",
    1031: "transaction_timed_out",
    1032: "too_many_watches",
    1036: "accessed_unreadable",
    1037: "process_behind",
    1038: "database_locked",
    1039: "cluster_version_changed",
    1042: "commit_proxy_memory_limit_exceeded",
    1051: "batch_transaction_throttled",
    1078: "grv_proxy_memory_limit_exceeded",
    1079: "blob_granule_request_failed",
    1101: "operation_cancelled",
    1213: "tag_throttled",
    1223: "proxy_tag_throttled",
    1510: "io_error",
    2000: "client_invalid_operation",
    2004: "key_outside_legal_range",
    2005: "inverted_range",
    2006: "invalid_option_value",
    2017: "used_during_commit",
    2020: "transaction_invalid_version",
    2021: "no_commit_version",
    2101: "transaction_too_large",
    2102: "key_too_large",
    2103: "value_too_large",
    2104: "connection_string_invalid",
    2203: "api_version_not_supported",
    4000: "unknown_error",
    4100: "internal_error",
}

#: Codes the retry loop retries: exactly those FoundationDB's ``Transaction::onError``
#: (``fdbclient/NativeAPI.actor.cpp``) backs off and resets for, plus 1039, which the
#: multi-version client retries after switching client library.
RETRYABLE_CODES: frozenset[int] = frozenset(
    {1007, 1009, 1020, 1021, 1037, 1038, 1039, 1042, 1051, 1078, 1079, 1213, 1223}
)

#: Codes after which the transaction may or may not have been applied.
MAYBE_COMMITTED_CODES: frozenset[int] = frozenset({1021, 1031, 1039})


class QuickError(Exception):
    """Root of every error quick raises on purpose."""


class StorageError(QuickError):
    """A transaction failed; ``code`` and ``name`` are FoundationDB's.

    The original engine error, when there is one, is on ``__cause__``.
    """

    def __init__(self, code: int, message: str | None = None) -> None:
        self.code = code
        self.name = ERROR_NAMES.get(code, ERROR_NAMES[4000])
        self.detail = message
        text = f"{self.name} ({code})"
        if message:
            text = f"{text}: {message}"
        super().__init__(text)

    @property
    def retryable(self) -> bool:
        """True when running the transaction again may succeed."""
        return self.code in RETRYABLE_CODES

    @property
    def maybe_committed(self) -> bool:
        """True when the transaction may have been applied despite the error."""
        return self.code in MAYBE_COMMITTED_CODES

    def __reduce__(self) -> tuple[type[StorageError], tuple[int, str | None]]:
        return (type(self), (self.code, self.detail))


class StoreFull(StorageError):
    """The disk holding the store is full (ENOSPC, SQLITE_FULL): the transaction wrote nothing.

    The store itself is intact; writes succeed again once space is freed, so this is
    not retryable at once (the retry loop would only spin) and a worker waits for
    space rather than treating the store as damaged. ``code`` is FoundationDB's
    io_error (1510), ``detail`` names the file.
    """

    def __init__(self, message: str | None = None) -> None:
        super().__init__(1510, message)

    def __reduce__(self) -> tuple[type[StoreFull], tuple[str | None]]:  # type: ignore[override]
        return (type(self), (self.detail,))


class EngineUnavailable(QuickError):
    """An engine cannot be used here: a missing client library, an unreachable cluster, or a
    store file that cannot be opened (a directory, a missing directory, not a database)."""


class InvalidURL(QuickError, ValueError):
    """A database URL that names no engine quick knows, or is malformed."""
