"""Public scaling-law datasets as tidy pandas tables.

The data files are not shipped with jaxscale. Loaders read them from a data
directory given by ``data_dir=``, :func:`set_data_dir`, the ``JAXSCALE_DATA``
environment variable, or the download cache (``JAXSCALE_CACHE``, default
``~/.cache/jaxscale/data``), always checking sha256 against the registry.
Files that are verbatim copies of public repositories are downloaded into the
cache on first use; derived files need a data directory.

Example:
    >>> import jaxscale.datasets as jd
    >>> jd.set_data_dir("../shared/data")  # doctest: +SKIP
    >>> jd.load_chinchilla().head()  # doctest: +SKIP
"""

from ._store import fetch, get_cache_dir, get_data_dir, registered_files, set_data_dir, url_for
from .benchmarks import load_bnsl_addition, load_chinchilla, load_colpret, load_revisiting
from .gadre import (
    GADRE_ERROR_FIT_POINTS,
    GADRE_LOSS_FIT_POINTS,
    GADRE_LOSS_SPLITS,
    GADRE_SIZES,
    GADRE_SUBSET17,
    GADRE_TARGET_POINTS,
    gadre_task_table,
    load_gadre,
)
from .lm_eval import read_lm_eval
from .neuneu import load_neuneu_histograms
from .olmo import OLMO_MMLU_WEIGHTS, OLMO_RUN_FILES, OLMO_SIZES, load_olmo_ladder
from .proteus import PROTEUS_TASKS, load_proteus

__all__ = [
    "GADRE_ERROR_FIT_POINTS",
    "GADRE_LOSS_FIT_POINTS",
    "GADRE_LOSS_SPLITS",
    "GADRE_SIZES",
    "GADRE_SUBSET17",
    "GADRE_TARGET_POINTS",
    "OLMO_MMLU_WEIGHTS",
    "OLMO_RUN_FILES",
    "OLMO_SIZES",
    "PROTEUS_TASKS",
    "fetch",
    "gadre_task_table",
    "get_cache_dir",
    "get_data_dir",
    "load_bnsl_addition",
    "load_chinchilla",
    "load_colpret",
    "load_gadre",
    "load_neuneu_histograms",
    "load_olmo_ladder",
    "load_proteus",
    "load_revisiting",
    "read_lm_eval",
    "registered_files",
    "set_data_dir",
    "url_for",
]
