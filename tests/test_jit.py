"""medsentry.jit: numba's BLAS probe runs without loading SciPy's linear algebra, and its
typing of CFFI functions without loading cffi's C parser."""

from __future__ import annotations

import subprocess
import sys

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
