"""``keyspace.open(url)``: from a database URL to an engine.

=================================  ===============================================
URL                                engine
=================================  ===============================================
``sqlite:///path/to/file.db``      embedded engine on that file (relative paths are
                                   relative to the working directory)
``fdb://``                         FoundationDB, default cluster file
``fdb:///path/to/fdb.cluster``     FoundationDB, that cluster file
=================================  ===============================================

Query parameters, on any engine unless noted:

* ``timeout=MS``: a transaction's deadline across its retries, from its creation
  (default 30000; 0 = none); past it calls fail with transaction_timed_out (1031).
* ``retry_limit=N``: retries ``on_error`` allows one transaction (default 100; -1 = none);
  past it the last error is raised.
* ``namespace=NAME``: keep everything under NAME, apart from other namespaces and the
  default (see :mod:`keyspace.namespace`); printable, at most 64 characters.
* ``sync=normal|full`` (sqlite durability).
* ``latency=grv:MS,read:MS,commit:MS`` (sqlite): simulated FoundationDB round trips,
  see :mod:`keyspace.latency`.
* ``faults=not_committed:0.05,commit_unknown_result:0.05,transaction_too_old:0.02``
  with ``seed=N`` wraps the engine in the fault injector.
* ``outage=START+DURATION`` (seconds): from START seconds after opening, for DURATION
  seconds, this process sees an unreachable cluster: every read and commit blocks until
  the outage ends or the transaction's ``timeout=`` passes (then 1031).
* ``disk_full=START+DURATION`` (seconds): in that window every commit that writes fails
  with the full-disk error (:class:`keyspace.errors.StoreFull`); reads answer.

The last three wrap the engine in the fault injector (:mod:`keyspace.faults`), which
keeps each transaction's timeout and retry count across the faults it injects.

Each parameter may be given once (a repeated one is refused, never silently the last).
With no URL, ``$QUICK_DB`` is used, else ``sqlite:///./quick.db``; an empty URL is refused.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlsplit

from keyspace.errors import InvalidURL
from keyspace.faults import FaultRates, FaultyDatabase, Window
from keyspace.latency import Latency
from keyspace.limits import DEFAULT_RETRY_LIMIT, DEFAULT_TIMEOUT_MS
from keyspace.namespace import NamespacedDatabase, validate_namespace
from keyspace.protocol import Database

__all__ = ["DEFAULT_URL", "open", "resolve_url"]

DEFAULT_URL = "sqlite:///./quick.db"
_KNOWN = {
    "sync",
    "retry_limit",
    "timeout",
    "namespace",
    "latency",
    "faults",
    "seed",
    "outage",
    "disk_full",
}


def resolve_url(url: str | None = None) -> str:
    """``url``, else (None) ``$QUICK_DB``, else the default embedded file. An empty
    ``$QUICK_DB`` counts as unset; an empty ``url`` is kept, and :func:`open` refuses it."""
    if url is not None:
        return url
    return os.environ.get("QUICK_DB") or DEFAULT_URL


def _param(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None


def _int_param(params: dict[str, list[str]], name: str, url: str) -> int | None:
    text = _param(params, name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidURL(f"{url}: {name} must be an integer, not {text!r}") from None


def open(url: str | None = None) -> Database:  # noqa: A001 - mirrors fdb.open
    """Open the database at ``url`` (see the module docstring for the forms).

    Raises:
        InvalidURL: an empty URL, an unknown scheme, a missing path, or a bad or
            repeated parameter.
        EngineUnavailable: ``fdb`` without ``libfdb_c``, or a cluster that does not answer;
            a sqlite path that cannot hold a store, named by its absolute path.
    """
    url = resolve_url(url)
    if not url.strip():
        raise InvalidURL("the database URL is empty; e.g. sqlite:///./quick.db or fdb://")
    parts = urlsplit(url)
    params = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(params) - _KNOWN
    if unknown:
        raise InvalidURL(f"{url}: unknown parameter(s) {', '.join(sorted(unknown))}")
    repeated = sorted(name for name, values in params.items() if len(values) > 1)
    if repeated:  # which one was meant? (namespace=a&namespace=b once used b silently)
        raise InvalidURL(f"{url}: parameter(s) given more than once: {', '.join(repeated)}")
    retry_limit = _int_param(params, "retry_limit", url)
    if retry_limit is None:
        retry_limit = DEFAULT_RETRY_LIMIT
    elif retry_limit < -1:
        raise InvalidURL(f"{url}: retry_limit must be -1 (no limit) or more, not {retry_limit}")
    timeout_ms = _int_param(params, "timeout", url)
    if timeout_ms is None:
        timeout_ms = DEFAULT_TIMEOUT_MS
    elif timeout_ms < 0:
        raise InvalidURL(f"{url}: timeout must be 0 (none) or more milliseconds, not {timeout_ms}")
    namespace = _param(params, "namespace")
    if namespace is not None:
        try:
            validate_namespace(namespace)
        except ValueError as error:
            raise InvalidURL(f"{url}: {error}") from None
    faults = _param(params, "faults")
    try:
        rates = FaultRates.parse(faults or "")
    except ValueError as error:
        raise InvalidURL(f"{url}: {error}") from None
    seed = _int_param(params, "seed", url) or 0
    outage, disk_full = (_window(params, name, url) for name in ("outage", "disk_full"))
    db: Database
    if parts.scheme == "sqlite":
        from keyspace.sqlite_engine import SqliteDatabase

        if parts.netloc:
            raise InvalidURL(f"{url}: write sqlite:///relative/or/absolute/path (three slashes)")
        path = unquote(parts.path)[1:] if parts.path.startswith("/") else unquote(parts.path)
        if not path:
            raise InvalidURL(f"{url}: the sqlite URL names no file, e.g. sqlite:///./quick.db")
        sync = _param(params, "sync") or "normal"
        latency_text = _param(params, "latency")
        try:
            latency = None if latency_text is None else Latency.parse(latency_text)
            db = SqliteDatabase(
                path,
                sync=sync,
                retry_limit=retry_limit,
                timeout_ms=timeout_ms,
                latency=latency,
                url=url,
            )
        except ValueError as error:
            raise InvalidURL(f"{url}: {error}") from None
    elif parts.scheme == "fdb":
        from keyspace.fdb_engine import open_fdb

        if "latency" in params:
            raise InvalidURL(f"{url}: latency= simulates FoundationDB on sqlite URLs only")
        cluster = unquote(parts.path) or None
        db = open_fdb(cluster, url, timeout_ms=timeout_ms, retry_limit=retry_limit)
    else:
        raise InvalidURL(
            f"{url}: unknown database scheme {parts.scheme or '(none)'!r}; "
            "use sqlite:///path/to/file.db or fdb:// or fdb:///path/to/fdb.cluster"
        )
    if namespace is not None:
        db = NamespacedDatabase(db, namespace)
    if faults or outage or disk_full:
        db = FaultyDatabase(
            db, rates, seed=seed, outage=outage, disk_full=disk_full, timeout_ms=timeout_ms
        )
    return db


def _window(params: dict[str, list[str]], name: str, url: str) -> Window | None:
    text = _param(params, name)
    if not text:
        return None
    try:
        return Window.parse(text)
    except ValueError as error:
        raise InvalidURL(f"{url}: {name}={error}") from None
