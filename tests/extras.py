"""The optional extras some test modules need. Such a module calls :func:`require_dashboard`
before its other imports, so without the extra it is skipped with the reason, never an
import error at collection."""

from __future__ import annotations

import pytest

#: The import names of the ``dashboard`` extra's packages (pyproject.toml).
DASHBOARD_MODULES = ("flask", "flask_wtf", "waitress")
DASHBOARD_REASON = "needs the dashboard extra: pip install -e '.[dashboard]'"


def require_dashboard() -> None:
    """Skip the calling test module, naming the extra, unless the dashboard extra is installed."""
    for module in DASHBOARD_MODULES:
        pytest.importorskip(module, reason=DASHBOARD_REASON)


#: The import names of what the tracing tests need: the ``otel`` extra's API and the SDK
#: (its in-memory exporter), which the ``test`` extra installs.
OTEL_MODULES = ("opentelemetry", "opentelemetry.sdk")
OTEL_REASON = "needs the otel extra and the SDK: pip install -e '.[test,otel]'"


def require_otel() -> None:
    """Skip the calling test module, naming the extra, unless OpenTelemetry (API and SDK) is
    installed."""
    for module in OTEL_MODULES:
        pytest.importorskip(module, reason=OTEL_REASON)
