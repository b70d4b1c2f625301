"""pyarrow for the source readers (formats.py), imported on first use, and its columns as numpy arrays.

pyarrow is imported inside the functions: the daemon and the workers import this package and must never
load it. Columns are read straight from pyarrow's buffers, and big arrays live in its memory pool (a
jemalloc pool, with every usable core for its threads), because that is where the import's time went.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_Number = TypeVar("_Number", np.int32, np.int64, np.float64)


def _arrow(module: str = "pyarrow") -> Any:
    """A pyarrow module, imported on first use (it ships no type stubs, hence Any)."""
    _size_arrow_pool()
    return importlib.import_module(module)


@functools.cache
def _pool() -> Any:
    """The memory pool for the reader's big allocations: jemalloc (else the system's), not the default mimalloc.

    Measured on the 2-core VM, in a fresh process: the same 3-million-row import took 0.9-1.2 s with mimalloc
    and 0.5-0.75 s with jemalloc, the difference being the cost of faulting in fresh pages.
    """
    pa = _arrow()
    return pa.jemalloc_memory_pool() if "jemalloc" in pa.supported_memory_backends() else pa.system_memory_pool()


@functools.cache
def _size_arrow_pool() -> None:
    """Give pyarrow's thread pool every usable core, once per process.

    pyarrow sizes the pool from OMP_NUM_THREADS, which `swimmy` sets to 1 for OpenBLAS: left so, the CSV
    reader runs on one core and takes twice as long as pandas on a 2-core machine.
    """
    pa = importlib.import_module("pyarrow")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if pa.cpu_count() < usable:
        pa.set_cpu_count(usable)


def _raw(values: Any, i: int) -> str:
    item = values[i].as_py()
    return item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item)


def _numpy(values: Any, dtype: type[_Number]) -> npt.NDArray[_Number]:
    """A pyarrow column of fixed-width numbers without nulls as one numpy array, in pyarrow's memory.

    Read straight from the buffers (pyarrow's to_numpy() imports pandas when it is installed: 0.3 s).
    """
    pa = _arrow()
    chunks = [c for c in (values.chunks if hasattr(values, "chunks") else [values]) if len(c)]
    arr = chunks[0] if len(chunks) == 1 else pa.concat_arrays(chunks, memory_pool=_pool()) if chunks else None
    if arr is None:
        return np.zeros(0, dtype=dtype)
    size = np.dtype(dtype).itemsize
    out = np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset * size)
    return out if out.flags.writeable else out.copy()


def _empty(n: int, dtype: type[_Number]) -> npt.NDArray[_Number]:
    """An uninitialised array in pyarrow's memory pool, which can reuse the pages the CSV reader has freed (a
    fresh numpy array faults in new ones: about 0.1 s per 100 MB in a VM)."""
    return np.frombuffer(_arrow().allocate_buffer(n * np.dtype(dtype).itemsize, memory_pool=_pool()), dtype=dtype)


def _numpy_floats(values: Any) -> FloatArray:
    pa = _arrow()
    return _numpy(values if values.type == pa.float64() else values.cast(pa.float64()), np.float64)


def _line_numbers(n: int, first: int) -> IntArray:
    """first, first + 1, ...: n line numbers, counted in place (np.arange would take fresh pages)."""
    lines = _empty(n, np.int64)
    lines.fill(1)
    lines[:1] = first
    return np.cumsum(lines, out=lines)
