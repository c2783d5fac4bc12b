#!/usr/bin/env bash
# The GPU checks of the "GPU path" issue, as one script for a CUDA machine with no network:
#   build gsplat's CUDA kernels (JIT, this GPU's architecture only) and our C++ CPU kernel side by side,
#   run the CUDA parity/training tests, then tools/bench_gpu.py on a D-NeRF scene, inside a time budget.
#
#   bash tools/gpu_check.sh OUT_DIR DATA_DIR [BUDGET_S] [bench_gpu.py config overrides...]
#
# Logs and bench_gpu.json go to OUT_DIR. Each benchmark field's training is capped so that the whole script
# ends within BUDGET_S seconds (default 560). gsplat and the other packages must already be importable.
set -u
OUT=${1:?OUT_DIR}; DATA=${2:?DATA_DIR}; BUDGET=${3:-560}; shift $(( $# < 3 ? $# : 3 ))
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} DYNGAUSS_CACHE=${DYNGAUSS_CACHE:-/tmp/dyngauss_cache}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
cap=$(python3 -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())" 2>/dev/null) || cap=""
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$cap}
{ nvidia-smi; python3 -c "import torch, sys; print(sys.version); print(torch.__version__, torch.version.cuda,
torch.cuda.get_device_name())"; nvcc --version | tail -2; } > "$OUT/env.txt" 2>&1
echo "[$(elapsed) s] arch $TORCH_CUDA_ARCH_LIST, $MAX_JOBS build jobs"

( time python3 -c "from gsplat.cuda._backend import _C; assert _C is not None, 'gsplat CUDA build failed'" ) \
    > "$OUT/gsplat_build.log" 2>&1 &
gs=$!
( time python3 -c "from dyngauss.render import cpu_backend; cpu_backend.build_extension()" ) \
    > "$OUT/cpu_build.log" 2>&1
wait $gs; gs_rc=$?
echo "[$(elapsed) s] builds done (gsplat rc=$gs_rc): $(grep real "$OUT/gsplat_build.log" | tr '\n' ' ')"
if [ $gs_rc -ne 0 ]; then tail -30 "$OUT/gsplat_build.log"; exit 1; fi

t_tests=$(( BUDGET - $(elapsed) - 60 )); [ $t_tests -lt 120 ] && t_tests=120
timeout $t_tests python3 -m pytest -q -rs -p no:cacheprovider \
    tests/test_gsplat_backend.py tests/test_graphed_pose.py \
    > "$OUT/pytest_gpu.log" 2>&1
echo "[$(elapsed) s] pytest rc=$?"; tail -15 "$OUT/pytest_gpu.log"

left=$(( BUDGET - $(elapsed) ))
per_field=$(( (left - 2 * 35) / 2 )); [ $per_field -gt 240 ] && per_field=240
if [ $per_field -lt 20 ]; then echo "no time left for the benchmark"; exit 1; fi
echo "[$(elapsed) s] benchmark, training capped at $per_field s per field"
python3 tools/bench_gpu.py --data "$DATA" --out /tmp/bench_gpu --time-limit $per_field train.progress=false "$@" \
    > "$OUT/bench.log" 2>&1
rc=$?
cp /tmp/bench_gpu/bench_gpu.json "$OUT/" 2>/dev/null
echo "[$(elapsed) s] bench rc=$rc"; grep -v "^\[" "$OUT/bench.log" | tail -25
