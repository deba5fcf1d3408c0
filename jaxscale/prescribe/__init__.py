"""Prescriptive scaling: from fitted laws to decisions.

- `allocation` (`allocate`): compute-optimal N_opt(C), D_opt(C) and the loss there from a Chinchilla or
  over-training fit, with bootstrap or posterior intervals; the allocation at a token multiplier M;
  iso-FLOP profiles from data (Approach 2).
- `boundary`: capability boundaries, the tau-quantile of a benchmark score as a monotone
  saturating sigmoid of log10 FLOPs, fitted with the smoothed pinball loss and the reference
  continuation schedule, all tasks x quantile levels batched.
- `coverage`: per-bin coverage error over equal-mass compute bins.
- `temporal`: fit on earlier model releases, score coverage on later ones.
- `design`: which models to evaluate under a cost budget (greedy balanced I-optimal design with
  rank-one updates), and budget sweeps against a random-subset baseline.
- `attainable` (`attainable_accuracy`): the accuracy attainable at compute C (loss law + loss -> accuracy law, or a
  boundary), with intervals.
- `cli`: the ``jaxscale allocate`` and ``jaxscale frontier`` subcommands.

Example:
    >>> from jaxscale import datasets, prescribe
    >>> fit = prescribe.fit_boundary(datasets.load_proteus(), taus=(0.98,))  # doctest: +SKIP
    >>> fit.coverage()  # doctest: +SKIP
"""

from jaxscale.prescribe.allocation import (
    IsoFlopResult,
    allocate,
    chinchilla_at_multiplier,
    chinchilla_optimum,
    iso_flop_profiles,
    overtraining_at_multiplier,
    overtraining_optimum,
    plot_allocation,
    plot_iso_flop,
)
from jaxscale.prescribe.attainable import attainable_accuracy, attainable_from_boundary
from jaxscale.prescribe.boundary import (
    BoundaryFit,
    Lanes,
    continuation_schedule,
    fit_boundary,
    fit_lanes,
    lanes_from_frame,
    objective_value,
)
from jaxscale.prescribe.coverage import bin_coverage, coverage_error, equal_mass_edges
from jaxscale.prescribe.design import BudgetResult, budget_sweep, greedy_design, random_design
from jaxscale.prescribe.temporal import (
    PAPER_BOUNDARIES,
    PROTEUS_BOUNDARIES,
    TemporalResult,
    assign_periods,
    boundary_by_period,
    temporal_validation,
)

__all__ = [
    "IsoFlopResult", "allocate", "chinchilla_at_multiplier", "chinchilla_optimum", "iso_flop_profiles",
    "overtraining_at_multiplier", "overtraining_optimum", "plot_allocation", "plot_iso_flop",
    "attainable_accuracy", "attainable_from_boundary",
    "BoundaryFit", "Lanes", "continuation_schedule", "fit_boundary", "fit_lanes", "lanes_from_frame",
    "objective_value", "bin_coverage", "coverage_error", "equal_mass_edges",
    "BudgetResult", "budget_sweep", "greedy_design", "random_design",
    "PAPER_BOUNDARIES", "PROTEUS_BOUNDARIES", "TemporalResult", "assign_periods", "boundary_by_period",
    "temporal_validation",
]
