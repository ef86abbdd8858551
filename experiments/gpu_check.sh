#!/usr/bin/env bash
# The checks to run on a GPU machine, in under 10 minutes: throughput at population sizes up to
# 4096 (experiments/bench_throughput.py) and the anytime race against Optuna TPE at GPU scale
# (experiments/bench_budget.py: budgets of 30 and 120 s, a population of 4096, one seed of the
# digits MLP: the default with budget=B against TPE driving the one-lane trainer for B, each
# choice's expected test from fresh-seed retrains). Every log and results JSON goes under $OUT
# (default ./gpu_out); a step that fails or runs out of time is reported and the next one still
# runs; the exit status is non-zero if any step failed.
#
#   bash experiments/gpu_check.sh            # on the GPU machine, from the repository root
#   OUT=/tmp/x bash experiments/gpu_check.sh --dry   # the same steps, tiny, on CPU: seconds
#
# --dry runs the same scripts with their smallest settings, so a test can check the script.
set -euo pipefail
export PYTHONUNBUFFERED=1

OUT="${OUT:-./gpu_out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")/.."
# vmaptune from this checkout, installed or not; the repository's virtual environment if any.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
DRY=0
if [ "${1:-}" = "--dry" ]; then
  DRY=1
elif [ -n "${1:-}" ]; then
  echo "usage: [OUT=dir] $0 [--dry]" >&2
  exit 2
fi

failed=()
# step NAME TIMEOUT_S COMMAND...: runs COMMAND with a time limit, its output to $OUT/NAME.log.
step() {
  local name=$1 limit=$2
  shift 2
  echo "== $name (at most ${limit}s): $*"
  local start=$SECONDS status=0
  timeout --signal=INT --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1 || status=$?
  tail -n 25 "$OUT/$name.log"
  echo "== $name: exit $status after $((SECONDS - start))s"
  if [ "$status" -ne 0 ]; then
    failed+=("$name")
  fi
}

{
  date -Is
  git rev-parse HEAD 2>/dev/null || true
  command -v nvidia-smi > /dev/null && nvidia-smi || echo "no nvidia-smi"
  "$PYTHON" -c "import jax; print('jax', jax.__version__, jax.default_backend(), jax.devices())"
} > "$OUT/machine.txt" 2>&1 || true
cat "$OUT/machine.txt"

if [ "$DRY" = 1 ]; then
  # A 256 x 256 matmul for the peak: a 2048 one (31 passes) took 5-10 s of a dry run.
  step throughput 120 "$PYTHON" experiments/bench_throughput.py --sizes 2 \
    --workloads digits_mlp --methods vmaptune sequential --no-cache-check --no-ablation \
    --matmul-size 256 --out "$OUT/throughput.json"
  # The race's smoke run (tests/test_experiments.py reads its results): the quick task, one
  # seed, 10 s budgets.
  step race 120 "$PYTHON" experiments/bench_budget.py --quick --budgets 10 --seeds 1 \
    --ceilings "$OUT/ceilings.json" --out "$OUT/race.json"
  # Also the search benchmark's smoke test (tests/test_experiments.py reads its results).
  step search 120 "$PYTHON" experiments/bench_search.py --tasks digits_mlp --seeds 1 \
    --methods tpe-sequential --set population=4 rounds=1 epochs=2 --out "$OUT/search.json"
else
  # Sizes up to 4096 on every workload; a (method, size) estimated over 12 s is skipped.
  step throughput 220 "$PYTHON" experiments/bench_throughput.py \
    --sizes 1 16 64 256 1024 4096 --budget-s 12 --no-cache-check \
    --out "$OUT/throughput.json"
  # 2 x (30 + 120) s of budgets, the ceiling (a 32 x 32 grid) and the retrains: about 5 min.
  step race 350 "$PYTHON" experiments/bench_budget.py --tasks digits_mlp --budgets 30 120 \
    --seeds 1 --methods default tpe --set population=4096 \
    --ceilings "$OUT/ceilings.json" --out "$OUT/race.json"
fi

if [ "${#failed[@]}" -ne 0 ]; then
  echo "failed: ${failed[*]} (logs in $OUT)"
  exit 1
fi
echo "done: logs and results in $OUT"
