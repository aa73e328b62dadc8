"""medsentry.jit: numba's BLAS probe runs without loading SciPy's linear algebra, and its
typing of CFFI functions without loading cffi's C parser."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _run(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_kernels_load_without_scipy_linalg() -> None:
    pytest.importorskip("scipy")
    got = _run(
        "import sys; import medsentry.jit; import numba.np.arraymath as a;"
        " print(a._HAVE_BLAS, 'scipy.linalg' in sys.modules);"
        " import scipy.linalg.cython_blas; print('scipy.linalg' in sys.modules)"
    )
    assert got == ["False", "False", "True"]  # hidden for the probe, importable after it


def test_a_process_with_scipy_linalg_loaded_keeps_numbas_blas() -> None:
    pytest.importorskip("scipy")
    got = _run(
        "import scipy.linalg; import medsentry.jit; import numba.np.arraymath as a;"
        " print(a._HAVE_BLAS)"
    )
    assert got == ["True"]


def test_a_kernel_compiles_and_runs_after_the_probe() -> None:
    got = _run(
        "import numpy as np; from medsentry.jit import njit\n"
        "@njit\n"
        "def dot(a, b):\n"
        "    return np.dot(a, b)\n"
        "print(dot(np.arange(4.0), np.arange(4.0)))"
    )
    assert got == ["14.0"]


def test_kernels_load_without_numbas_cffi_support() -> None:
    pytest.importorskip("cffi")
    got = _run(
        "import sys; import medsentry.jit; from numba.core.typing import cffi_utils as c;"
        " print(c.SUPPORTED, 'pycparser' in sys.modules);"
        " import cffi; print(cffi.FFI().sizeof('int'))"
    )
    assert got == ["False", "False", "4"]  # hidden for numba's typing, importable after it


def test_a_process_with_cffi_loaded_keeps_numbas_cffi_support() -> None:
    pytest.importorskip("cffi")
    got = _run(
        "import cffi; import medsentry.jit; from numba.core.typing import cffi_utils as c;"
        " print(c.SUPPORTED)"
    )
    assert got == ["True"]


_CACHED_KERNEL = """\
import numpy as np
from medsentry.jit import njit


@njit(cache=True)
def total(a):
    s = 0
    for x in a:
        s += x
    return s
"""


def test_a_cached_kernel_loads_without_numbas_registries_and_compiling_still_works(
    tmp_path: Path,
) -> None:
    """The second process loads the kernel from numba's cache without the registry refresh
    (numba's list implementation is not imported by it), gets the same answer, and a kernel
    compiled after that, which needs the list implementation, still compiles and runs."""
    (tmp_path / "cached_total.py").write_text(_CACHED_KERNEL)
    call = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        "import numpy as np; import cached_total\n"
        "print(cached_total.total(np.arange(10)), cached_total.total.stats.cache_hits.total(),"
        " 'numba.cpython.listobj' in sys.modules)\n"
    )
    assert _run(call) == ["45", "0", "True"]  # compiled (and cached): every registry loaded
    then_compile = (
        "from medsentry.jit import njit\n"
        "@njit\n"
        "def listed(n):\n"
        "    out = [0]\n"
        "    for i in range(n):\n"
        "        out.append(i)\n"
        "    return len(out)\n"
        "print(listed(5))"
    )
    assert _run(call + then_compile) == ["45", "1", "False", "6"]
