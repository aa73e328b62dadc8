"""numba for medsentry's kernels: every module that compiles one imports `njit` from here.

At import, numba.np.arraymath probes for a BLAS by importing SciPy's linear algebra when SciPy
is installed (numba/np/arraymath.py `_check_blas`): about 0.1 s of every command's start-up, for
linear algebra no kernel here does. The probe runs once, here, with SciPy hidden as if it were
not installed, so numba takes its own loop for `np.dot` of vectors (the only use of the probe's
answer). SciPy is importable again straight after; a process that had loaded SciPy's linear
algebra already is left as it is.

numba's typing of CFFI functions (numba/core/typing/cffi_utils.py) builds a `cffi.FFI()` when
cffi is installed, which loads pycparser: 25 ms of the first kernel call, for calls into C
through CFFI that no kernel here makes. It is imported here the same way, with cffi hidden;
cffi is importable again straight after, and a process that had imported cffi keeps numba's
support for it.
"""

from __future__ import annotations

import sys


def _import_hiding(module: str, hidden: str, *already: str) -> None:
    """Import `module` as if `hidden` were not installed, unless `module` or any of `already`
    is imported (probed already, or the probe's import costs nothing now)."""
    if module in sys.modules or any(m in sys.modules for m in already):
        return
    sys.modules[hidden] = None  # type: ignore[assignment]  # importing it raises ImportError
    try:
        __import__(module)
    finally:
        del sys.modules[hidden]


# numba's own import may have loaded SciPy's top-level package (a version check, 5 ms)
_import_hiding(
    "numba.np.arraymath", "scipy.linalg" if "scipy" in sys.modules else "scipy", "scipy.linalg"
)
_import_hiding("numba.core.typing.cffi_utils", "cffi", "cffi")

from numba import njit  # noqa: E402

__all__ = ["njit"]
