#!/usr/bin/env bash
# The GPU figures of one short device lease (planned at about 8 minutes), into $OUT:
#   population.json  whole Hopper loops (benchmarks/population.py, bf16-mixed, paper settings, the second 250-step
#                    period after RANDOM_STEPS random steps): a one-agent run (CUDA graphs on, as on one GPU by
#                    default) and populations of SEEDS seeds in one process (eager: a population runs without graphs)
#   components.json  benchmarks/bench.py --device cuda --quick --only sac ensemble: the SAC update and the ensemble
#                    step, eager vs CUDA graphs (per-1000-env-step figures: a second call with BENCH="--quick")
# Each part has its own time limit (POP_TIMEOUT, BENCH_TIMEOUT seconds), so that the call ends inside the device
# tool's 10 minutes; population.py writes each layout's row to the JSON as soon as it is measured.
# Prepare once here: benchmarks/gpu_wheels.sh (the dependencies the GPU image lacks, into .whl/). Then, with the
# device tool: command `OUT=$OUT bash benchmarks/gpu_check.sh`, carry [".whl"], timeout_s 600. Smoke-test on a CPU
# with `SKIP_WHEELS=1 PY=.venv/bin/python DEVICE=cpu SEEDS=1 POP_TIMEOUT=900 bash benchmarks/gpu_check.sh` (the
# wheels are for the GPU image's Python 3.12).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
DEVICE=${DEVICE:-cuda}
SEEDS=${SEEDS:-"1 8"}
RANDOM_STEPS=${RANDOM_STEPS:-500}
BENCH=${BENCH:-"--quick --only sac ensemble"}
POP_TIMEOUT=${POP_TIMEOUT:-400}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-150}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -z "${SKIP_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - <<'PYEOF' | tee "$OUT/device.txt"
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
PYEOF
start=$(date +%s)
# shellcheck disable=SC2086  # SEEDS and BENCH are word lists
timeout "$POP_TIMEOUT" "$PY" benchmarks/population.py --seeds $SEEDS --precisions bf16-mixed --random-steps "$RANDOM_STEPS" \
  --layouts "one process" separate --separate-up-to 1 --json "$OUT/population.json" 2>&1 | tee "$OUT/population.log"
echo "population: $(( $(date +%s) - start )) s"
start=$(date +%s)
# shellcheck disable=SC2086
timeout "$BENCH_TIMEOUT" "$PY" benchmarks/bench.py --device "$DEVICE" --threads 4 $BENCH --out "$OUT/components.json" 2>&1 \
  | tee "$OUT/components.log" | tail -40
echo "components: $(( $(date +%s) - start )) s"
ls -la "$OUT"
