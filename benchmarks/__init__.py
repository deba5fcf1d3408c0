"""jaxscale benchmarks: each times jaxscale against a SciPy baseline in the same process.

Run one with ``python -m benchmarks.NAME`` (``chinchilla``, ``bnsl_tasks``, ``tiny_m2``,
``scaling``) or all with ``python -m benchmarks``; pass ``--tasks N`` or ``--scale S`` for a
small run. Results go to ``benchmarks/RESULTS.md`` (one section per benchmark).
"""
