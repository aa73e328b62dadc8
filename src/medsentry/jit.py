"""numba for medsentry's kernels: every module that compiles one imports `njit` from here.

At import, numba.np.arraymath probes for a BLAS by importing SciPy's linear algebra when SciPy
is installed (numba/np/arraymath.py `_check_blas`): about 0.1 s of every command's start-up, for
linear algebra no kernel here does. The probe runs once, here, with SciPy hidden as if it were
not installed, so numba takes its own loop for `np.dot` of vectors (the only use of the probe's
answer). SciPy is importable again straight after; a process that had loaded SciPy's linear
algebra already is left as it is.
"""

from __future__ import annotations

import sys


def _arraymath_without_scipy() -> None:
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return  # probed already, or the probe's import costs nothing now
    # numba's own import may have loaded the top-level package (a version check, 5 ms)
    hidden = "scipy.linalg" if "scipy" in sys.modules else "scipy"
    sys.modules[hidden] = None  # type: ignore[assignment]  # importing it raises ImportError
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        del sys.modules[hidden]


_arraymath_without_scipy()

from numba import njit  # noqa: E402

__all__ = ["njit"]
