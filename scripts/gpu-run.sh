#!/usr/bin/env bash
# One call on a bare GPU machine (CMake + nvcc, no Node, no ../shared): build libpia_cuda.so and the
# native harness, run the CUDA parity suite (every op and the SD-1.5 + PIA networks, CUDA vs CPU),
# then the CUDA benchmark. Logs go to $OUT (the device runner's output folder) or ./gpu-run-logs.
#   scripts/gpu-run.sh              # tests + benchmark
#   scripts/gpu-run.sh tests        # tests only
#   scripts/gpu-run.sh bench        # benchmark only (a second call on a warm machine reuses the build)
#   scripts/gpu-run.sh sanitize     # compute-sanitizer memcheck/racecheck/synccheck over the kernels
#                                   # that have never run (tensor-core attention, cp.async GEMM, im2col)
#   (with carry/ from scripts/gpu-carry.sh, also the Node-level tests in test/gpu)
#   PIA_CUDA_ARCH=90 scripts/gpu-run.sh   # build for one architecture only (faster)
#   PIA_BENCH_DTYPE=f16|bf16|f32    # the benchmark's activation dtype (default bf16)
#   (the tests run the CUDA-graph suite, step_graphs, and the UNet parity again with PIA_CUDA_GRAPHS=1;
#    the benchmark times the UNet step with graphs off and on)
#   PIA_DIFFUSERS_SRC=/path/diffusers/src  # then bench/torch_unet_motion.py times diffusers' UNetMotionModel too
# It reruns parts of the suite under the CUDA library's switches, each commented where used
# (PIA_DISABLE_CUBLASLT, PIA_CUDA_SIMPLE_GEMM, PIA_CUDA_IM2COL_BUDGET, PIA_DISABLE_CUDNN), among
# them PIA_CUDA_SIMPLE_ATTENTION=1: f16/bf16 attention on the FMA kernel instead of the tensor-core one.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${PIA_GPU_BUILD:-build-gpu}
LOGS=${OUT:-$PWD/gpu-run-logs}
mkdir -p "$LOGS"
what=${1:-all}

{ nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1 || true; nvcc --version 2>&1 | tail -1; } | tee "$LOGS/device.txt"

gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
arch=()
[ -n "${PIA_CUDA_ARCH:-}" ] && arch=(-DCMAKE_CUDA_ARCHITECTURES="$PIA_CUDA_ARCH")
start=$(date +%s)
if ! { cmake -S . -B "$BUILD" "${gen[@]}" -DPIA_CUDA=ON -DPIA_NATIVE_TESTS=ON "${arch[@]}" &&
       cmake --build "$BUILD" -j "$(nproc)"; } > "$LOGS/build.log" 2>&1; then
  tail -40 "$LOGS/build.log"
  echo "gpu-run: build failed (full log: $LOGS/build.log)"
  exit 2
fi
echo "gpu-run: built in $(( $(date +%s) - start )) s"

status=0
if [ "$what" = "sanitize" ]; then
  # Small cases only: the sanitizer runs kernels 10-100x slower. Each tool's report goes to its log.
  san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
  if [ -z "$san" ]; then
    echo "gpu-run: compute-sanitizer not found" | tee "$LOGS/sanitize.txt"
    exit 2
  fi
  : > "$LOGS/sanitize.txt"
  # Each run at most 100 s (a timeout shows as exit 124 and leaves a partial log).
  for run in "memcheck cuda_ops_vs_cpu" "memcheck cuda_attention_tc_vs_cpu" "racecheck cuda_attention_tc_vs_cpu" \
             "racecheck cuda_ops_vs_cpu" "synccheck cuda_attention_tc_vs_cpu"; do
    set -- $run
    tool=$1 t=$2
    echo "== $tool $t" | tee -a "$LOGS/sanitize.txt"
    PIA_DISABLE_CUBLASLT=1 PIA_DISABLE_CUDNN=1 PIA_CUDA_IM2COL_BUDGET=20000 timeout 100 \
      "$san" --tool "$tool" --error-exitcode 3 "$BUILD/bin/pia_native_tests" "$t" > "$LOGS/sanitize-$tool-$t.log" 2>&1
    rc=$?
    tail -5 "$LOGS/sanitize-$tool-$t.log" | tee -a "$LOGS/sanitize.txt"
    echo "   exit $rc" | tee -a "$LOGS/sanitize.txt"
    [ "$rc" -eq 0 ] || status=1
  done
  exit $status
fi
if [ "$what" != "bench" ]; then
  "$BUILD/bin/pia_native_tests" cuda 2>&1 | tee "$LOGS/tests.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  "$BUILD/bin/pia_native_tests" temporal_attention 2>&1 | tee -a "$LOGS/tests.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1

  # CUDA graphs of the UNet step (PIA_CUDA_GRAPHS): graphs on vs off bitwise, then the UNet's
  # CUDA-vs-CPU parity once more with every UNet capturing its steps.
  "$BUILD/bin/pia_native_tests" step_graphs 2>&1 | tee -a "$LOGS/tests.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  PIA_CUDA_GRAPHS=1 "$BUILD/bin/pia_native_tests" cuda_unet_motion_vs_cpu 2>&1 | tee -a "$LOGS/tests.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1

  # GEMMs again on our own kernels where cuBLASLt was found and used above: the cp.async one (what
  # machines without cuBLASLt run), then the simple one it falls back to.
  PIA_DISABLE_CUBLASLT=1 "$BUILD/bin/pia_native_tests" cuda_ops_vs_cpu 2>&1 | tee -a "$LOGS/tests.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  PIA_DISABLE_CUBLASLT=1 PIA_CUDA_SIMPLE_GEMM=1 "$BUILD/bin/pia_native_tests" cuda_ops_vs_cpu 2>&1 | tee -a "$LOGS/tests.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  # Convolutions in column blocks of a few hundred pixels (several blocks per image at test sizes).
  PIA_CUDA_IM2COL_BUDGET=20000 "$BUILD/bin/pia_native_tests" cuda_ops_vs_cpu 2>&1 | tee -a "$LOGS/tests.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  # Convolutions again on our own implicit-GEMM kernel where cuDNN was found and used above.
  PIA_DISABLE_CUDNN=1 "$BUILD/bin/pia_native_tests" cuda_ops_vs_cpu 2>&1 | tee -a "$LOGS/tests.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1

  # The attention cases again on the FMA kernel (f16/bf16 ran on the tensor-core kernel above).
  PIA_CUDA_SIMPLE_ATTENTION=1 "$BUILD/bin/pia_native_tests" cuda_attention 2>&1 | tee -a "$LOGS/tests.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1

  # Node-level GPU tests (test/gpu) when scripts/gpu-carry.sh packed carry/ on a machine with Node:
  # its node binary, the compiled tests, sharp, the addon built there and the tiny-family fixtures.
  if [ -f carry/node.xz ]; then
    nd=$(mktemp -d)
    xz -dc carry/node.xz > "$nd/node" && chmod +x "$nd/node"
    mkdir -p "$nd/fixtures" && tar xJf carry/fixtures.tar.xz -C "$nd/fixtures"
    ln -s "$PWD/assets/clip-tokenizer" "$nd/fixtures/models/tiny/tokenizer"
    [ -d carry/js/node_modules ] || { mkdir -p carry/js/node_modules && tar xJf carry/node_modules.tar.xz -C carry/js/node_modules; }
    mkdir -p "$nd/addon" && tar xJf carry/addon.tar.xz -C "$nd/addon"
    PIA_FIXTURES="$nd/fixtures" PIA_ADDON_PATH="$nd/addon/pia_addon.node" \
      "$nd/node" --test --test-reporter=spec carry/js/test/gpu/*.test.js 2>&1 | tee "$LOGS/node-gpu.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  else
    echo "gpu-run: no carry/ (scripts/gpu-carry.sh): Node-level GPU tests not run" | tee "$LOGS/node-gpu.txt"
  fi
fi

if [ "$what" != "tests" ]; then
  "$BUILD/bin/pia_native_bench" cuda 2>&1 | tee "$LOGS/bench.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  # The same attention shapes on the FMA kernel, for the tensor-core kernel's speed-up.
  PIA_CUDA_SIMPLE_ATTENTION=1 "$BUILD/bin/pia_native_bench" bench_cuda_attention 2>&1 | tee -a "$LOGS/bench.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  # Our own GEMM kernels' rates (what machines without cuBLASLt get): cp.async, then the simple one.
  PIA_DISABLE_CUBLASLT=1 "$BUILD/bin/pia_native_bench" bench_cuda_gemm_peak 2>&1 | tee -a "$LOGS/bench.txt"
  PIA_DISABLE_CUBLASLT=1 PIA_CUDA_SIMPLE_GEMM=1 "$BUILD/bin/pia_native_bench" bench_cuda_gemm_peak 2>&1 | tee -a "$LOGS/bench.txt"
  # diffusers' UNetMotionModel in PyTorch on the same GPU (skips itself without torch/diffusers;
  # PIA_DIFFUSERS_SRC names a diffusers checkout's src folder, brought along, never committed).
  if command -v python3 >/dev/null 2>&1; then
    if [ -z "${PIA_DIFFUSERS_SRC:-}" ] && [ -f carry/diffusers.tar.xz ]; then
      dd=$(mktemp -d) && tar xJf carry/diffusers.tar.xz -C "$dd" && export PIA_DIFFUSERS_SRC="$dd/src"
    fi
    ours=$(sed -n 's/.*result unet_step_s=\([0-9.]*\).*/\1/p' "$LOGS/bench.txt" | head -1)
    timeout "${PIA_TORCH_TIMEOUT:-300}" python3 bench/torch_unet_motion.py ${ours:+--ours "$ours"} 2>&1 | tee "$LOGS/torch.txt"
  fi
fi
exit $status
