"""FoundationDB's tuple encoding (``fdb.tuple``), imported without the binding's import hook.

``fdb.tuple`` imports the binding's vendored ``six``, which appends a ``_SixMetaPathImporter``
to ``sys.meta_path``. That finder has no ``find_spec``, so on Python 3.11 every import that
fails through it (an optional ``import winreg``, say) raises an ``ImportWarning``: an error in
any test suite run with warnings as errors, and quick's pytest plugin is loaded into every
suite of a project that installs quick. The binding never imports through that finder (it
reads ``six``'s attributes), so every finder the binding's ``six`` installed is removed once
``fdb.tuple`` has loaded. Import ``fdbtuple`` from here, never ``fdb.tuple`` directly.
"""

from __future__ import annotations

import sys

import fdb.tuple as fdbtuple

__all__ = ["drop_six_finders", "fdbtuple"]


def drop_six_finders() -> None:
    """Remove from ``sys.meta_path`` the finders of the binding's vendored ``six`` (named
    ``fdb.six``, or any six module under ``fdb``), leaving every other finder alone."""
    sys.meta_path[:] = [
        finder
        for finder in sys.meta_path
        if not (
            type(finder).__name__ == "_SixMetaPathImporter"
            and str(getattr(finder, "name", "")).startswith("fdb.")
        )
    ]


drop_six_finders()
