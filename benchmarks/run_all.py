"""Run every benchmark in sequence, each in a fresh process (so first calls include compilation).

    python -m benchmarks                     # all, full size; results in benchmarks/RESULTS.md
    python -m benchmarks --scale 0.05        # all, small (marked SMALL-SCALE in the results)
    python -m benchmarks --only chinchilla,tiny_m2 --no-write

Options other than those below are passed to every benchmark (e.g. ``--seed 1``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchmarks import _common as C

BENCHMARKS = ["chinchilla", "bnsl_tasks", "tiny_m2", "curves92", "bootstrap", "scaling", "boundary"]
TAKES_TASKS = {"bnsl_tasks", "tiny_m2", "scaling"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    p.add_argument("--skip", default="", help="comma-separated benchmarks to skip")
    p.add_argument("--scale", type=float, default=None, help="passed to every benchmark")
    p.add_argument("--tasks", type=int, default=None, help="passed to the task benchmarks (scaling: largest T)")
    p.add_argument("--results", default=None, help=f"results file (default {C.RESULTS})")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--keep-going", action="store_true", help="go on after a benchmark fails")
    args, rest = p.parse_known_args(argv)
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    names = [n for n in names if n and n not in set(args.skip.split(","))]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {BENCHMARKS}")

    failed = []
    for name in names:
        cmd = [sys.executable, "-m", f"benchmarks.{name}", *rest]
        if args.scale is not None:
            cmd += ["--scale", str(args.scale)]
        if args.tasks is not None and name in TAKES_TASKS:
            cmd += ["--tasks", str(args.tasks)]
        if args.results:
            cmd += ["--results", args.results]
        if args.no_write:
            cmd.append("--no-write")
        print(f"\n=== {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=C.REPO).returncode
        print(f"=== {name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
            if not args.keep_going:
                break
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
