"""``quick dashboard``: a web UI over the same store and query functions as the CLI.

Theory of operation: a Flask app (Jinja2 templates, autoescaped) served by waitress,
a production WSGI server, because every query is a blocking transaction and each
request simply runs its reads in a server thread. Pages read through
:mod:`quick.inspection`, :mod:`quick.cron` and :mod:`workflow.views`; nothing here
writes a second copy of a query. A stored record that does not decode is shown as
"corrupt record at <key>" and the rest of the page still renders.

Security: binds 127.0.0.1 by default and then accepts only loopback ``Host`` headers
(a DNS-rebinding page cannot read it), plus any ``allowed_hosts``; off loopback it
answers only ``allowed_hosts``, which actions require there. A POST whose ``Origin``
(or ``Referer``) names a host not allowed is refused. Pages are read-only unless ``allow_actions``,
in which case requeue and purge are POST forms checked by Flask-WTF's
``CSRFProtect`` with a per-process secret; without it the action routes answer 403
and no buttons are drawn. Responses forbid scripts and framing (a strict
Content-Security-Policy): the pages need no JavaScript.
"""

from quick.dashboard.app import create_app, serve, trusted_hosts

__all__ = ["create_app", "serve", "trusted_hosts"]
