"""swimmy: the school of an FX trading system."""

import os as _os

# One BLAS thread: the school's matrix products are small (32 x 256), and an OpenBLAS pool spins after each
# one, measured at 340-480 µs of CPU per IS result taken from the workers on a 2-core machine
# (bench/fleet_bench.py). Set before numpy is imported anywhere in the process; an operator's own value wins.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_name, "1")

__version__ = "0.1.0"
