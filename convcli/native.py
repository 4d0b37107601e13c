"""The C extension (``convcli._native``), or its NumPy fallback when it is missing.

An install without a C compiler still works: ``pip`` builds the extension as optional, and
then :mod:`convcli._fallback` computes the same results (see there for how exactly),
several times more slowly.  ``CONVCLI_NATIVE=0`` in the environment forces the fallback (to
test it).  ``AVAILABLE`` tells which one runs, and :data:`NOTE` says it in words for
``--verbose`` and ``probe``.
"""

from __future__ import annotations

import os

if os.environ.get("CONVCLI_NATIVE", "1") == "0":
    from . import _fallback as _impl

    AVAILABLE = False
    WHY = "CONVCLI_NATIVE=0"
else:
    try:
        from . import _native as _impl  # type: ignore[no-redef]

        AVAILABLE = True
        WHY = ""
    except ImportError:  # built without a C compiler
        from . import _fallback as _impl

        AVAILABLE = False
        WHY = "the C extension is not built (no C compiler at install time)"

#: One line for --verbose and probe.
NOTE = (
    "C extension: built (direct backend in C)"
    if AVAILABLE
    else f"C extension: not in use ({WHY}); the NumPy fallback runs, several times slower"
)

correlate2d = _impl.correlate2d
correlate_separable = _impl.correlate_separable
to_depth = _impl.to_depth
count_outside = _impl.count_outside
png_unfilter = _impl.png_unfilter
#: The fused strip pass (stored samples in, rounded samples out): C only, None without it.
correlate_io = getattr(_impl, "correlate_io", None)
