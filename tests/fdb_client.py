"""Whether FoundationDB's client library ``libfdb_c`` can be loaded on this machine.

Mirrors where the binding looks (``fdb/impl.py``): beside the module, through a
``.pth`` file there, then the platform's library search path. Checked without
importing ``fdb.impl``, which would load the library into the test process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

import fdb


def client_library_present() -> bool:
    """True when the binding would find and load ``libfdb_c``."""
    name = "libfdb_c.dylib" if sys.platform == "darwin" else "libfdb_c.so"
    here = os.path.dirname(fdb.__file__)
    if any(os.path.exists(os.path.join(here, found)) for found in (name, name + ".pth")):
        return True
    try:
        ctypes.CDLL(name)
    except OSError:
        return ctypes.util.find_library("fdb_c") is not None
    return True


CLIENT_LIBRARY_PRESENT = client_library_present()
