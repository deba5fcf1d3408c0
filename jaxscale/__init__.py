"""jaxscale: fit and forecast neural scaling laws in JAX.

    >>> import jaxscale
    >>> res = jaxscale.fit(df, "chinchilla", x=["N", "D"], y="loss", loss="huber_log")  # doctest: +SKIP
    >>> res.forecast({"N": [7e10], "D": [1.4e12]})  # doctest: +SKIP

jaxscale enables JAX's float64 mode on import (scaling-law fits need it); set the environment
variable ``JAXSCALE_X64=0`` before importing to keep JAX's default.
"""

from __future__ import annotations

import os

import jax

if os.environ.get("JAXSCALE_X64", "1") != "0":
    jax.config.update("jax_enable_x64", True)

from jaxscale import laws, losses  # noqa: E402
from jaxscale.data import DataError, Dataset  # noqa: E402
from jaxscale.bootstrap import BootstrapResult, bootstrap  # noqa: E402
from jaxscale.fitting import fit  # noqa: E402
from jaxscale.forecast import forecast_frame, quantile_column  # noqa: E402
from jaxscale.result import FitResult, load  # noqa: E402
from jaxscale.solver import SolverConfig, Status  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "fit", "load", "bootstrap", "BootstrapResult", "Dataset", "DataError", "FitResult", "Status", "SolverConfig", "laws", "losses",
    "forecast_frame", "quantile_column", "__version__",
]
