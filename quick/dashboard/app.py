"""The Flask application: configuration, security checks, template helpers, serving."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import secrets
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, abort, g, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException, SecurityError
from werkzeug.wrappers.response import Response

from keyspace.errors import EngineUnavailable, StorageError
from keyspace.protocol import Database
from quick.dashboard.actions import actions
from quick.dashboard.batch_pages import batch_pages
from quick.dashboard.explore import explore
from quick.dashboard.pages import pages
from quick.dashboard.state import State
from quick.jobs import now_ms

__all__ = ["State", "create_app", "serve", "LOOPBACK_HOSTS", "host_allowed", "trusted_hosts"]

#: Host headers accepted when bound to a loopback address (ports are not compared).
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]

#: What a missing time shows (an en dash).
NONE = "\u2013"

#: No scripts, no framing, forms post only to this origin: the pages are plain HTML.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

#: Methods that change nothing, so need no Origin check.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def trusted_hosts(
    host: str, allowed_hosts: Sequence[str] = (), *, allow_actions: bool = False
) -> list[str] | None:
    """The ``Host`` names the dashboard answers when bound to ``host`` (None: any).

    On a loopback address: the loopback names, and ``allowed_hosts``. Elsewhere:
    ``allowed_hosts``; none is any host, allowed only read-only, since a DNS-rebinding
    page could otherwise drive the actions from a victim's browser.

    Raises:
        ValueError: actions are allowed off loopback with no ``allowed_hosts``.
    """
    if _loopback(host):
        return [*LOOPBACK_HOSTS, *allowed_hosts]
    if allowed_hosts:
        return list(allowed_hosts)
    if allow_actions:
        raise ValueError(
            f"--allow-actions on {host} (not loopback) needs --allowed-host NAME: the names "
            "browsers reach the dashboard by, so a DNS-rebinding page cannot act"
        )
    return None


def host_allowed(netloc: str, hosts: Sequence[str]) -> bool:
    """Whether ``netloc`` (``host[:port]``, an IPv6 address in brackets) names one of
    ``hosts``; ports are not compared, and a name with a leading dot matches its
    subdomains. (Werkzeug's ``TRUSTED_HOSTS`` cannot match an IPv6 address.)"""
    name = urlsplit(f"//{netloc}").hostname
    if not name:
        return False
    for ref in hosts:
        ref = ref.strip("[]").lower()
        if name == ref.lstrip(".") or (ref.startswith(".") and name.endswith(ref)):
            return True
    return False


def create_app(
    db: Database,
    *,
    allow_actions: bool = False,
    host: str = "127.0.0.1",
    allowed_hosts: Sequence[str] = (),
    secret_key: bytes | None = None,
) -> Flask:
    """The dashboard as a WSGI app over ``db``.

    Args:
        db: an open database; the caller closes it.
        allow_actions: enable the requeue and purge forms; otherwise they answer 403.
        host: the address served; a loopback one restricts ``Host`` headers to loopback names.
        allowed_hosts: further ``Host`` names answered (:func:`trusted_hosts`); a POST whose
            ``Origin`` (or, without one, ``Referer``) names another host is refused (403).
        secret_key: signs the session holding the CSRF token; a random one per process by
            default (tokens then end with the process, which is what we want).

    Raises:
        ValueError: actions allowed off loopback without ``allowed_hosts``.
    """
    hosts = trusted_hosts(host, allowed_hosts, allow_actions=allow_actions)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key or secrets.token_bytes(32),
        WTF_CSRF_TIME_LIMIT=None,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_HTTPONLY=True,
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    app.extensions["quick"] = State(db=db, allow_actions=allow_actions)

    @app.before_request
    def allowed_host() -> Response | None:
        """A Host header not allowed (a DNS-rebinding page's name): 400, plain text."""
        if hosts is None or host_allowed(request.host, hosts):
            return None
        message = f"Host {request.host!r} is not allowed here (see --allowed-host)\n"
        return Response(message, status=400, mimetype="text/plain")

    @app.before_request
    def clock() -> None:
        g.now = now_ms()

    @app.before_request
    def actions_allowed() -> None:
        """Action routes are forbidden (before any CSRF check) unless allowed."""
        if request.blueprint == "actions" and not allow_actions:
            abort(403, "actions are disabled; start the dashboard with --allow-actions")

    @app.before_request
    def same_origin_post() -> None:
        """A POST from a page of another host is refused: its ``Origin`` (or ``Referer``)
        must name an allowed host. A client that sends neither is no browser; the CSRF
        token still guards it."""
        if request.method in SAFE_METHODS or hosts is None:
            return
        source = request.headers.get("Origin") or request.headers.get("Referer")
        if source is None:
            return
        if not host_allowed(urlsplit(source).netloc, hosts):
            abort(403, f"a POST from {source!r}, which is not an allowed host, is refused")

    CSRFProtect(app)
    app.register_blueprint(pages)
    app.register_blueprint(actions)
    app.register_blueprint(explore)
    app.register_blueprint(batch_pages)
    app.jinja_env.filters.update(when=when, age=age, pretty=pretty)
    app.jinja_env.globals.update(allow_actions=allow_actions, store_url=db.url)

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        # Not no-referrer: with it browsers send "Origin: null" on our own form posts.
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(CSRFError)
    def csrf_failed(error: CSRFError) -> tuple[str, int]:
        return render_template("error.html", title="Rejected", message=error.description), 400

    @app.errorhandler(StorageError)
    @app.errorhandler(EngineUnavailable)
    def store_failed(error: Exception) -> tuple[str, int]:
        message = f"the store could not answer: {error}"
        return render_template("error.html", title="Store unavailable", message=message), 503

    @app.errorhandler(SecurityError)
    def untrusted_host(error: SecurityError) -> Response:
        """A malformed Host header: plain text, since no URL can be built."""
        return Response(f"{error.description}\n", status=400, mimetype="text/plain")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[str, int]:
        title = error.name
        return render_template("error.html", title=title, message=error.description), (
            error.code or 500
        )

    return app


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def serve(
    db: Database,
    *,
    host: str,
    port: int,
    allow_actions: bool,
    allowed_hosts: Sequence[str] = (),
    threads: int = 4,
) -> None:
    """Serve the dashboard with waitress until interrupted (blocks).

    ``threads`` request threads each run their page's transactions; four keep a page
    responsive while another reads a large window, without crowding the store.

    Raises:
        OSError: the address cannot be bound (in use, or not this machine's).
        ValueError: actions allowed off loopback without ``allowed_hosts``.
    """
    import socket

    from waitress.server import create_server

    app = create_app(db, allow_actions=allow_actions, host=host, allowed_hosts=allowed_hosts)
    # Bind here rather than in waitress, whose failed bind leaks its socket: ours closes.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host.strip("[]"), port), family=family)
    try:
        server = create_server(app, sockets=[listener], threads=threads, ident="quick")
    except BaseException:
        listener.close()
        raise
    mode = "actions enabled" if allow_actions else "read-only"
    shown = f"[{host}]" if ":" in host else host
    print(f"quick dashboard on http://{shown}:{port}/ ({mode}; store {db.url})", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


# -- template helpers (pure) -----------------------------------------------------------------


def when(ms: int | None) -> str:
    """Milliseconds since the epoch as UTC ``YYYY-MM-DD HH:MM:SSZ``; a dash for None."""
    if ms is None:
        return NONE
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def age(ms: int | None, now: int | None = None) -> str:
    """How long ago (or how far ahead) ``ms`` is from now: ``3m 04s ago``, ``in 12s``."""
    if ms is None:
        return NONE
    now = g.now if now is None else now
    delta = abs(now - ms) // 1000
    days, rest = divmod(delta, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        text = f"{days}d {hours:02d}h"
    elif hours:
        text = f"{hours}h {minutes:02d}m"
    elif minutes:
        text = f"{minutes}m {seconds:02d}s"
    else:
        text = f"{seconds}s"
    return f"in {text}" if ms > now else f"{text} ago"


def pretty(value: Any) -> str:
    """A stored value as indented JSON (bytes and other msgpack types as their repr)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=repr)
