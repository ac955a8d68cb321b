#!/usr/bin/env bash
# The GPU check, one prepared script for a machine with a CUDA GPU and CuPy (at most ~8 minutes):
#   scripts/device_check.sh [OUT_DIR]        (PY=python to use; default .venv/bin/python, else python3)
# 1. the GPU tests (tests/backends/test_gpu.py, tests/run/test_gpu_day.py: GPU vs CPU results and clusters);
# 2. benchmarks.gpu: components on ~10M edges (CuPy kernel vs numpy, labels equal), then the all-vs-all k-NN
#    graph of 1M x 256 with the blocked IVF on the GPU vs exact search on the GPU (edge recall by id), and
#    GPU vs CPU at 200k side by side;
# 3. a 1M-face first day end to end on the GPU backend (benchmarks.first_day --set backend=gpu), and the same
#    day on the CPU backend when CPU_DAY=1.
# Every figure lands in OUT_DIR as JSON (summary.json lists the steps and their exit codes). Exit status:
# 0 when every step passed, 1 when one failed, 3 when the machine cannot run the GPU backend at all.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-device-check}}
mkdir -p "$OUT"
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
N=${N:-1000000}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

missing=$("$PY" - <<'PY'
import importlib.util
need = ["numpy", "cupy", "faiss", "dask", "distributed", "pyarrow", "pydantic", "click", "pytest", "yaml"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$missing" ]; then
  echo "device_check: $PY lacks: $missing (install the project with the [gpu] extra, or carry wheels)" | tee "$OUT/error.txt"
  exit 3
fi
problem=$("$PY" -c 'from daskcluster.backends import gpu_problem; print(gpu_problem() or "")')
if [ -n "$problem" ]; then
  echo "device_check: the GPU backend cannot run here: $problem" | tee "$OUT/error.txt"
  exit 3
fi
"$PY" -c 'import cupy, json; p = cupy.cuda.runtime.getDeviceProperties(0); print(json.dumps({"device": p["name"].decode(), "memory_gib": round(p["totalGlobalMem"] / 2**30, 1), "cupy": cupy.__version__}))' | tee "$OUT/device.json"

status=0
steps=()
step() {  # step NAME TIMEOUT_S COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "== $name"
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  steps+=("{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - t0))}")
  [ "$rc" -eq 0 ] || status=1
}
step tests 150 "$PY" -m pytest -q -rs -p no:cacheprovider tests/backends/test_gpu.py tests/run/test_gpu_day.py \
  --junitxml "$OUT/tests.xml"
step bench 180 "$PY" -m benchmarks.gpu --out-dir "$OUT" --n "$N"
step day 150 "$PY" -m benchmarks.first_day --n "$N" --modes default --workers 1 --set backend=gpu \
  --out "$OUT/day_gpu.jsonl"
if [ "${CPU_DAY:-0}" = 1 ]; then
  step day-cpu 240 "$PY" -m benchmarks.first_day --n "$N" --modes default --workers 8 --out "$OUT/day_cpu.jsonl"
fi
(IFS=,; echo "{\"status\": $status, \"steps\": [${steps[*]}]}") | tee "$OUT/summary.json"
exit $status
