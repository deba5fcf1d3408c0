#!/usr/bin/env bash
# The GPU benchmarks, as one script for a lent accelerator (the `device` tool's `run`).
#
#   OUT=/tmp/gpu JAXSCALE_DATA=/path/to/data bash benchmarks/gpu.sh [stages...]
#
# Stages (default: all, in this order; each under its own time limit, so one that runs long or
# fails leaves the others' results): smoke, neuneu_runs, bnsl, neuneu_tasks, m2.
# Writes the sections into $OUT/neuneu_runs.md, $OUT/neuneu_tasks.md and $OUT/scaling.md (to be
# merged into benchmarks/RESULTS.md and ACCURACY.md) and the whole log into $OUT/gpu.log.
# If jaxscale does not import or the smoke test fails with the machine's own flax/optax/orbax/numpyro,
# wheels of the versions pinned here are installed from .whl/ (when carried) and the smoke test retried.
set -u
OUT=${OUT:-/tmp/jaxscale_gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:-}${PYTHONPATH:+:}$PWD"
export JAXSCALE_DATA=${JAXSCALE_DATA:-$PWD/.gpudata}
PY=${PY:-python3}
STEPS=${NEUNEU_STEPS:-1000}
BATCH=${NEUNEU_BATCH:-256}
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(smoke neuneu_runs bnsl neuneu_tasks m2)
exec > >(tee -a "$OUT/gpu.log") 2>&1
say() { echo "[$(date -u +%H:%M:%S)] $*"; }

smoke() {
  timeout 150 "$PY" - <<'EOF'
import time, tempfile
t0 = time.perf_counter()
import jax, numpy as np
jax.config.update("jax_enable_x64", True)
import flax, optax, orbax.checkpoint, numpyro, pandas, scipy
print("versions: jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, "orbax",
      orbax.checkpoint.__version__, "numpyro", numpyro.__version__, "pandas", pandas.__version__, "scipy", scipy.__version__)
print("devices:", jax.devices())
import jaxscale
from benchmarks import tiny_m2
res = jaxscale.fit(tiny_m2.to_dataset(tiny_m2.generate(500, 0)), "saturating_power_law", loss="mse")
print("fit ok share", float(np.mean(res.ok)))
from jaxscale.neuneu import model_config, train, TrainConfig, synthetic_sampler
sampler = synthetic_sampler(64, 8, batch_size=64, context_length=32, n_features=16, seed=0)
with tempfile.TemporaryDirectory() as d:
    tr = train(sampler, model_config("small", n_features=16), TrainConfig(steps=40, batch_size=64, log_every=20),
               checkpoint_dir=d, progress=False)
q = tr.predict(sampler(10**6))
assert q.shape == (64, 5) and np.all(np.diff(q, axis=1) >= 0), q[:2]
print("neuneu ok:", tr.model_config.dtype, tr.history.tail(1).to_dict("records"))
print("smoke ok in", round(time.perf_counter() - t0, 1), "s")
EOF
}

for stage in "${stages[@]}"; do
  say "stage $stage"
  case $stage in
    smoke)
      nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
      if ! smoke; then
        say "smoke failed with the machine's packages; installing carried wheels"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
          && export PYTHONPATH="/tmp/site:$PYTHONPATH" && smoke || { say "smoke failed: stopping"; exit 1; }
      fi ;;
    neuneu_runs|neuneu_tasks)
      split=${stage#neuneu_}
      timeout "${NEUNEU_LIMIT:-180}" "$PY" -m benchmarks.neuneu --model paper --splits "$split" --steps "$STEPS" \
        --batch-size "$BATCH" --learning-rate 6e-4 --n-models 1 \
        --accuracy "$OUT/$stage.md" --results "$OUT/$stage.md" || say "$stage: exit $?" ;;
    bnsl)
      timeout "${BNSL_LIMIT:-150}" "$PY" -m benchmarks.scaling --law bnsl1 --tasks "${BNSL_TASKS:-1000000}" --repeats 1 \
        --results "$OUT/scaling.md" || say "bnsl: exit $?" ;;
    m2)
      timeout "${M2_LIMIT:-45}" "$PY" -m benchmarks.scaling --law m2 --tasks "${M2_TASKS:-1000000}" --repeats 2 \
        --results "$OUT/scaling.md" || say "m2: exit $?" ;;
    *) say "unknown stage $stage" ;;
  esac
done
say "done"
