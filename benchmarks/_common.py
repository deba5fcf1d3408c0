"""Shared benchmark helpers: timing, memory, machine description, fit quality, RESULTS.md, CLI.

Conventions used by every benchmark:

- *first call*: wall time of the first call in a fresh process, so jaxscale's tracing and XLA
  compilation are included (the SciPy baselines jit their JAX gradient in their first call too).
- *steady state*: best (minimum) wall time of ``n`` further calls on the same inputs.
- *peak memory*: the highest resident set size (RSS, read from ``/proc/self/statm`` by a
  sampling thread every few milliseconds) reached during the timed calls, minus the RSS just
  before them, i.e. the extra memory the method needed; the process high-water mark
  (``resource.getrusage(...).ru_maxrss``) is reported too. RSS counts XLA's buffers, which
  ``tracemalloc`` does not see.
- *fit quality*: per task objective of both methods on the same data; the median ratio
  jaxscale / baseline and the share of tasks where jaxscale is worse by more than 1e-6 relative.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
RESULTS_HEADER = """# jaxscale benchmark results

Each section is written by one benchmark (`python -m benchmarks.NAME`); re-running a benchmark
replaces only its own section. Times are wall-clock seconds. *First call* includes jaxscale's
tracing and XLA compilation (fresh process); *steady state* is the best of several repeated calls
on the same inputs. *Peak RSS +* is the extra resident memory reached during the timed calls.
*Worse* counts tasks where jaxscale's objective exceeds the baseline's by more than 1e-6 relative.
Sections marked SMALL-SCALE were run with `--tasks`/`--scale` and are not the benchmark's figures.
"""
REL_TOL = 1e-6


def data_dir() -> Path:
    """The data directory: ``$JAXSCALE_DATA`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("JAXSCALE_DATA", REPO.parent / "shared" / "data"))


# --------------------------------------------------------------------------- memory
def current_rss() -> int:
    """Resident set size of this process in bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: fall back to the high-water mark
        return max_rss()


def max_rss() -> int:
    """Process high-water mark of the RSS in bytes (``getrusage``)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


class PeakRSS:
    """Context manager sampling the RSS in a thread; ``.extra`` is the peak above the start."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, current_rss())

    def __enter__(self) -> "PeakRSS":
        self.start = self.peak = current_rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, current_rss())

    @property
    def extra(self) -> int:
        return max(self.peak - self.start, 0)


def tracemalloc_peak(fn: Callable[[], Any]) -> int:
    """Peak bytes of Python and NumPy allocations during ``fn()`` (``tracemalloc``; untimed: it slows
    Python code down). Complements the RSS figure for pure-Python/NumPy baselines run after jaxscale,
    whose RSS growth is hidden by memory the process already holds. XLA buffers are not seen."""
    import tracemalloc

    was = tracemalloc.is_tracing()
    if not was:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        fn()
        return max(tracemalloc.get_traced_memory()[1] - base, 0)
    finally:
        if not was:
            tracemalloc.stop()


# --------------------------------------------------------------------------- timing
@dataclasses.dataclass
class Timing:
    """Wall times of one method: first call and steady state (best of `repeats` further calls)."""

    first_s: float
    steady_s: float
    repeats: int
    peak_extra_bytes: int
    result: Any = None
    all_s: tuple[float, ...] = ()

    @property
    def steady_measured(self) -> bool:
        return self.repeats > 0

    def scaled(self, factor: float) -> "Timing":
        """The same timing extrapolated linearly to `factor` times the work (for subsets)."""
        return dataclasses.replace(self, first_s=self.first_s * factor, steady_s=self.steady_s * factor,
                                   all_s=tuple(t * factor for t in self.all_s))


def _block(out: Any) -> Any:
    try:
        import jax

        return jax.block_until_ready(out)
    except Exception:  # noqa: BLE001 - non-JAX results need no blocking
        return out


def time_calls(fn: Callable[[], Any], repeats: int = 3) -> Timing:
    """Time ``fn()``: the first call, then `repeats` more; the steady state is their minimum.

    With ``repeats == 0`` the steady state is the first call's time (``steady_measured`` False).
    The result of the last call is kept in ``.result``.
    """
    times = []
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        out = _block(fn())
        times.append(time.perf_counter() - t0)
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = _block(fn())
            times.append(time.perf_counter() - t0)
    steady = min(times[1:]) if repeats > 0 else times[0]
    return Timing(times[0], steady, repeats, mem.extra, out, tuple(times))


# --------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _git_commit() -> str:
    if os.environ.get("JAXSCALE_COMMIT"):  # a copy of the tree without .git (e.g. on a lent GPU machine)
        return os.environ["JAXSCALE_COMMIT"]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha + ("+dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, library versions, JAX backend, commit and date."""
    import jax
    import scipy

    import jaxscale

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        import jaxlib

        jaxlib_v = jaxlib.__version__
    except (ImportError, AttributeError):
        jaxlib_v = "?"
    devices = jax.devices()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gib": _ram_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib_v,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "jaxscale": jaxscale.__version__,
        "backend": jax.default_backend(),
        "device": f"{len(devices)} x {devices[0].device_kind}",
        "x64": bool(jax.config.jax_enable_x64),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "commit": _git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def device_peak_bytes() -> int | None:
    """Peak bytes in use on the first accelerator since the process started (None on CPU or when
    the backend keeps no statistics). It only grows: read it after each stage for that stage's peak
    when stages grow in size."""
    import jax

    dev = jax.devices()[0]
    if dev.platform == "cpu":
        return None
    try:
        stats = dev.memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without statistics
        return None
    peak = stats.get("peak_bytes_in_use")
    return int(peak) if peak is not None else None


def fmt_gib(n: int | None) -> str:
    return "—" if n is None else f"{n / 2**30:.2f}"


def machine_line(m: dict[str, Any] | None = None) -> str:
    m = m or machine()
    ram = f"{m['ram_gib']:.0f} GiB RAM" if m["ram_gib"] else "RAM unknown"
    cores = f"{m['cores']} cores" + (f" ({m['usable_cores']} usable)" if m["usable_cores"] != m["cores"] else "")
    flags = f", XLA_FLAGS={m['xla_flags']}" if m["xla_flags"] else ""
    return (f"{m['cpu']}, {cores}, {ram}; {m['os']}; JAX backend {m['backend']} ({m['device']}), "
            f"float64 {'on' if m['x64'] else 'off'}{flags}; Python {m['python']}, jax {m['jax']}, "
            f"jaxlib {m['jaxlib']}, numpy {m['numpy']}, scipy {m['scipy']}, jaxscale {m['jaxscale']} "
            f"(commit {m['commit']}); {m['date']}")


# --------------------------------------------------------------------------- quality
@dataclasses.dataclass
class Quality:
    """Per-task comparison of jaxscale's objective with a baseline's (lower is better)."""

    n: int
    median_ratio: float
    share_worse: float
    share_better: float
    max_rel_worse: float
    n_jax_nonfinite: int
    n_ref_nonfinite: int

    @property
    def share_no_worse(self) -> float:
        return 1.0 - self.share_worse

    def line(self) -> str:
        return (f"{self.n} task(s): median objective ratio jaxscale/baseline {self.median_ratio:.6f}; "
                f"jaxscale worse by > {REL_TOL:g} rel. on {self.share_worse:.2%} "
                f"({round(self.share_worse * self.n)}), better on {self.share_better:.2%} "
                f"({round(self.share_better * self.n)}); largest relative excess {self.max_rel_worse:.2e}; "
                f"non-finite: jaxscale {self.n_jax_nonfinite}, baseline {self.n_ref_nonfinite}")


def compare_objectives(f_jax: Sequence[float], f_ref: Sequence[float], rtol: float = REL_TOL,
                       atol: float = 0.0) -> Quality:
    """Compare per-task objectives: jaxscale is *worse* on a task where
    ``f_jax > f_ref + rtol * |f_ref| + atol`` (or f_jax is not finite but f_ref is), *better*
    where ``f_jax < f_ref - (rtol * |f_ref| + atol)`` (or only f_ref is not finite)."""
    fj = np.asarray(f_jax, dtype=float).ravel()
    fr = np.asarray(f_ref, dtype=float).ravel()
    if fj.shape != fr.shape:
        raise ValueError(f"objective arrays differ in shape: {fj.shape} vs {fr.shape}")
    okj, okr = np.isfinite(fj), np.isfinite(fr)
    both = okj & okr
    tol = rtol * np.abs(np.where(okr, fr, 0.0)) + atol
    worse = (~okj & okr) | (both & (fj - fr > tol))
    better = (okj & ~okr) | (both & (fr - fj > tol))
    pos = both & (fr > 0)
    ratio = fj[pos] / fr[pos]
    rel = np.where(pos, (fj - fr) / np.where(pos, fr, 1.0), 0.0)
    n = fj.size
    return Quality(
        n=n,
        median_ratio=float(np.median(ratio)) if ratio.size else float("nan"),
        share_worse=float(worse.sum() / n) if n else float("nan"),
        share_better=float(better.sum() / n) if n else float("nan"),
        max_rel_worse=float(max(rel.max(initial=0.0), 0.0)),
        n_jax_nonfinite=int((~okj).sum()),
        n_ref_nonfinite=int((~okr).sum()),
    )


# --------------------------------------------------------------------------- RESULTS.md
def write_section(title: str, body: str, path: Path | str = RESULTS) -> Path:
    """Insert or replace the section headed ``## {title}`` in the results file.

    A section runs from its heading to the next ``## `` heading (or the end of the file); other
    sections are left untouched, so re-running one benchmark updates only its own section.
    """
    path = Path(path)
    heading = f"## {title}"
    text = path.read_text() if path.exists() else RESULTS_HEADER
    lines = text.rstrip("\n").split("\n")
    new = [heading, "", *body.strip("\n").split("\n"), ""]
    try:
        start = lines.index(heading)
    except ValueError:
        out = lines + [""] + new
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        out = lines[:start] + new + lines[end:]
    # collapse runs of blank lines left by replacements
    cleaned: list[str] = []
    for line in out:
        if line == "" and cleaned and cleaned[-1] == "":
            continue
        cleaned.append(line)
    path.write_text("\n".join(cleaned).rstrip("\n") + "\n")
    return path


# --------------------------------------------------------------------------- formatting
def fmt_s(t: float) -> str:
    if not np.isfinite(t):
        return "n/a"
    if t >= 100:
        return f"{t:.0f}"
    if t >= 1:
        return f"{t:.2f}"
    if t >= 1e-3:
        return f"{t:.4f}"
    return f"{t:.2e}"


def fmt_mib(b: int | float) -> str:
    return f"{b / 2**20:.0f}"


def fmt_x(r: float) -> str:
    if not np.isfinite(r):
        return "n/a"
    return f"{r:.1f}x" if r >= 1 else f"{r:.2g}x"


def timing_table(rows: Sequence[tuple[str, Timing, int]], note: dict[str, str] | None = None) -> list[str]:
    """Markdown table: method, first call, steady state, per task, peak RSS +."""
    note = note or {}
    out = ["| method | first call (s) | steady state (s) | steady per task | peak RSS + (MiB) |",
           "|---|---:|---:|---:|---:|"]
    for name, t, n_tasks in rows:
        steady = fmt_s(t.steady_s) + ("" if t.steady_measured else " (1 run)")
        out.append(f"| {name}{note.get(name, '')} | {fmt_s(t.first_s)} | {steady} | "
                   f"{fmt_s(t.steady_s / max(n_tasks, 1))} | {fmt_mib(t.peak_extra_bytes)} |")
    return out


def memory_note(name: str, peak: int, what: str) -> str:
    return (f"Memory of the {name}: its RSS + is a lower bound (it runs after jaxscale in the same process and "
            f"reuses memory already held); tracemalloc peak of Python/NumPy allocations {peak / 2**20:.2f} MiB "
            f"(untimed rerun on {what}).")


def check(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def scale_label(full: bool, what: str) -> str:
    return "full size" if full else f"SMALL-SCALE run ({what}); not the benchmark's figures"


def command_line() -> str:
    mod = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "?"
    return " ".join(["python -m benchmarks." + mod, *sys.argv[1:]])


# --------------------------------------------------------------------------- CLI
def make_parser(description: str, default_tasks: int | None, *, tasks_help: str = "number of tasks",
                baseline_tasks: int | None = None, repeats: int = 3, baseline_repeats: int = 1,
                baseline_tasks_help: str | None = None, seed: bool = True) -> argparse.ArgumentParser:
    """The shared command line: ``--tasks``, ``--scale``, repeats, baseline subset, output."""
    p = argparse.ArgumentParser(description=description)
    if default_tasks is not None:
        p.add_argument("--tasks", type=int, default=None, help=f"{tasks_help} (default {default_tasks:,})")
        p.add_argument("--scale", type=float, default=1.0,
                       help="multiply the default size (e.g. 0.05 for a quick run); ignored with --tasks")
        p.add_argument("--baseline-tasks", type=int, default=baseline_tasks,
                       help=baseline_tasks_help or (
                           "run the SciPy baseline on only the first N tasks and extrapolate its time "
                           f"(default {baseline_tasks if baseline_tasks else 'all tasks'}; 0 = all)"))
    p.add_argument("--repeats", type=int, default=repeats,
                   help=f"steady-state repeats of the jaxscale call (best of; default {repeats})")
    p.add_argument("--baseline-repeats", type=int, default=baseline_repeats,
                   help=f"steady-state repeats of the SciPy baseline (default {baseline_repeats}; 0 = first call only)")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="seed of the generated problem (default 0)")
    p.add_argument("--results", type=Path, default=RESULTS, help=f"results file (default {RESULTS.relative_to(REPO)})")
    p.add_argument("--no-write", action="store_true", help="print the section, do not write the results file")
    return p


def resolve_tasks(args: argparse.Namespace, default: int) -> tuple[int, bool]:
    """(number of tasks, whether this is the full-size run)."""
    if args.tasks is not None:
        t = int(args.tasks)
    else:
        t = max(1, int(round(default * args.scale)))
    return t, t == default


def baseline_count(args: argparse.Namespace, n_tasks: int) -> int:
    b = getattr(args, "baseline_tasks", None)
    return n_tasks if not b or b <= 0 else min(int(b), n_tasks)


def accuracy_main(p: argparse.ArgumentParser, argv: Sequence[str] | None, accuracy: Path, title: str,
                  run: Callable[[argparse.Namespace], str]) -> int:
    """Add ``--accuracy``/``--no-write`` to ``p``, parse ``argv``, run and emit the section to ``accuracy``."""
    p.add_argument("--accuracy", type=Path, default=accuracy)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    args.results = args.accuracy
    emit(args, title, run(args))
    return 0


def emit(args: argparse.Namespace, title: str, body: str) -> None:
    """Print the section and (unless --no-write) write it to the results file."""
    print(f"\n## {title}\n\n{body}")
    if not args.no_write:
        path = write_section(title, body, args.results)
        print(f"\n[written to {path}]")
