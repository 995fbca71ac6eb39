#!/usr/bin/env bash
# Every check that needs a GPU, in one bounded script: the CUDA training tests and the
# benchmarks of issues 3-5 and 11 on the GPU. Each step has its own time limit, so one slow
# step still leaves the others' figures. Logs go to $OUT (or results/bench/).
# Usage: bench/gpu_checks.sh [step ...]   (default: every step; names as in "=== name")
set -u
cd "$(dirname "$0")/.."
out=${OUT:-results/bench}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$out/gpu.txt"
wanted=" ${*:-gpu_test cifar_throughput gpu_busy expansion complexity pack} "
step() { # name, seconds, command...
  local name=$1 secs=$2; shift 2
  [[ $wanted == *" $name "* ]] || return 0
  echo "=== $name"
  timeout -k 5 "$secs" "$@" 2>&1 | tee "$out/$name.log"
}
step gpu_test 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_train_cifar.py
step cifar_throughput 360 python3 bench/bench_cifar_throughput.py
step gpu_busy 120 python3 bench/bench_cifar_throughput.py --busy
step expansion 80 python3 bench/bench_expansion.py --device cuda
step complexity 80 python3 bench/bench_complexity.py --device cuda
# Training packs (issue 11): per member-module-step time for K = 1, 4, 9, 16, loop and
# packed backends, eager and graph; memory per member at depth 1000; pack members vs runs
# alone; then graph + channels_last (+ bf16). Estimated 4-5 min on an H200, never run;
# limited to 7 (figures are printed as they come). Alone:
#   bench/gpu_checks.sh pack
step pack 420 python3 bench/bench_pack.py
