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

Loading a kernel from numba's on-disk cache first refreshes the whole target context
(numba/core/caching.py `Cache.load_overload`): it imports and installs every lowering and
typing registry numba has (lists, sets, dicts, random generators, polynomials, jitclass, 3rd
party entry points), 55 ms of the first kernel call of every command, for a kernel that is
already machine code. A cached kernel needs only numba's runtime (NRT) initialised, which the
refresh does first; so a cache load here does just that. A compilation (a cache miss, a new
signature) still refreshes everything, in numba's compiler (`CompilerBase.__init__`), before it
types anything. When numba's method is not the one this replaces, it is left as it is.
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


def _load_cached_without_refresh() -> None:
    """Cache loads initialise the runtime instead of refreshing every registry (see above)."""
    from numba.core import caching
    from numba.core.runtime import rtsys

    original = caching.Cache.load_overload
    # numba's own method: refresh, then load under its guard (checked by name, so another
    # numba version's, or somebody else's replacement, is kept)
    if getattr(original, "__module__", None) != caching.__name__ or set(
        original.__code__.co_names
    ) != {"refresh", "_guard_against_spurious_io_errors", "_load_overload"}:
        return

    def load_overload(self, sig, target_context):  # type: ignore[no-untyped-def]
        rtsys.initialize(target_context)  # what the loaded code calls into (idempotent)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)
        return None  # the guard swallowed an I/O error: a miss, compiled as numba would

    load_overload.__doc__ = original.__doc__
    caching.Cache.load_overload = load_overload  # type: ignore[method-assign]


_load_cached_without_refresh()

from numba import njit  # noqa: E402

__all__ = ["njit"]
