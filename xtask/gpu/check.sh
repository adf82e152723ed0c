#!/usr/bin/env bash
# The CUDA checks of adapt on a GPU machine, in one run that ends within about 9 minutes.
#
#   xtask/gpu/check.sh DATA [BUNDLE]
#
# DATA:   a data folder (mnist/, mnist_m/ as `cargo xtask train --data-dir` reads them), or the
#         folders xtask/gpu/pack_for_gpu.py wrote, joined by ':' (e.g. .gpu-a:.gpu-b; unpacked
#         here with xtask/gpu/unpack_digits.py).
# BUNDLE: the folder `cargo xtask build-cuda --tests --bundle DIR` filled (xtask, generic_path),
#         or a .tar.xz of it (default .gpu-b/bundle.tar.xz).
#
# Prepared here (no GPU):
#   cargo xtask build-cuda --tests --bundle /tmp/bundle        # xtask + generic_path, ~66 MB
#   tar -C /tmp -cJf .gpu-b/bundle.tar.xz bundle               # ~10 MB
#   ADAPT_DATA_DIR=../shared/data python3 xtask/gpu/pack_for_gpu.py .gpu-a .gpu-b
# .gpu-a (MNIST-M train, ~45 MB) and .gpu-b (MNIST, MNIST-M test, the binaries) do not fit in one
# 64 MiB carry together: carry .gpu-a in a first call (command `true`), then, at once (the machine
# stays warm 30 s and keeps ignored files while it does), carry .gpu-b and run
#   xtask/gpu/check.sh .gpu-a:.gpu-b .gpu-b/bundle.tar.xz
# (check.sh says so if .gpu-a did not survive: unpack_digits.py names the missing part).
#
# Run from the repository root on a machine with the NVIDIA driver (R580+) and PyTorch for CUDA 13
# (its nvidia/cu13/lib gives the CUDA libraries). No Rust toolchain is needed. Everything goes
# under $OUT (default ./gpu-out): summary.md (the figures), results.jsonl (one JSON object per
# step), log.txt (every command's output), env.txt (driver, GPU, libraries). Each step has its own
# timeout, and a step that would not fit in what is left of BUDGET_S (default 540 s) is skipped
# and says so. Steps, most important first:
#   1. the generic-path tests on CUDA (tests/generic_path.rs, ADAPT_REQUIRE_CUDA=1);
#   2. `bench --device cuda --net mnist --against-pytorch` (the DANN step against PyTorch CUDA);
#   3. the toy (`train --device cuda`, seed 0; CPU: 92.7 % DANN target accuracy);
#   4. the paper-length DANN MNIST -> MNIST-M, seed 0, timed (CPU: 73.4 % MNIST-M, 102-157 s);
#   5. `bench --device cuda --net gta --batch 100 --against-pytorch` (a GTA iteration: the GTA
#      row; no GTA training, as the packed MNIST-M keeps only the centre 28x28 that DANN reads);
#   6. the same DANN run for seeds 1 and 2 (CPU: 73.2 %, 69.4 %).
set -u
DATA=${1:?usage: xtask/gpu/check.sh DATA [BUNDLE]}
BUNDLE=${2:-.gpu-b/bundle.tar.xz}
OUT=${OUT:-$PWD/gpu-out}
BUDGET_S=${BUDGET_S:-540}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
START=$(date +%s)
LOG="$OUT/log.txt"
RES="$OUT/results.jsonl"
SUM="$OUT/summary.md"
: >"$LOG"; : >"$RES"
echo "# adapt CUDA check ($(date -u +%FT%TZ))" >"$SUM"

left() { echo $((BUDGET_S - ($(date +%s) - START))); }
note() { echo "$*" | tee -a "$SUM"; }

# step NAME TIMEOUT_S COMMAND...: runs COMMAND with its own timeout if it fits in the budget;
# its output goes to log.txt, its last stdout line (a JSON object, with --json) to results.jsonl.
step() {
    local name=$1 limit=$2; shift 2
    if [ "$(left)" -lt "$limit" ]; then
        note "- $name: SKIPPED (${limit} s needed, $(left) s left)"
        return 1
    fi
    echo "=== $name: $*" >>"$LOG"
    local t0 out rc secs ms
    t0=$(date +%s%N)
    out=$(timeout -k 5 "$limit" "$@" 2>>"$LOG")
    rc=$?
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    secs=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
    echo "$out" >>"$LOG"
    local last
    last=$(echo "$out" | tail -n 1)
    if [ "$rc" -eq 0 ] && echo "$last" | "$PY" -c 'import json,sys; json.loads(sys.stdin.read())' 2>/dev/null; then
        echo "{\"step\": \"$name\", \"rc\": 0, \"seconds\": $secs, \"result\": $last}" >>"$RES"
    else
        echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $secs}" >>"$RES"
    fi
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        note "- $name: TIMED OUT after ${limit} s"
    elif [ "$rc" -ne 0 ]; then
        note "- $name: FAILED (exit $rc, ${secs} s; see log.txt)"
    else
        note "- $name: ok (${secs} s)"
    fi
    LAST_OUT=$out
    return "$rc"
}

# --- The binaries and their libraries -------------------------------------------------------
if [ -f "$BUNDLE" ]; then
    mkdir -p /tmp/adapt-bundle && tar -xJf "$BUNDLE" -C /tmp/adapt-bundle || { note "cannot unpack $BUNDLE"; exit 1; }
    BUNDLE=/tmp/adapt-bundle/$(tar -tJf "$BUNDLE" | head -n 1 | cut -d/ -f1)
fi
XT=$BUNDLE/xtask
TESTS=$BUNDLE/generic_path
for f in "$XT" "$TESTS"; do
    [ -x "$f" ] || { note "missing $f: build it with cargo xtask build-cuda --tests --bundle $BUNDLE"; exit 1; }
done
# PyTorch's CUDA 13 wheels: nvidia/cu13/lib (one tree), or the older nvidia/<lib>/lib layout.
NV=$("$PY" -c 'import nvidia, os; print(list(nvidia.__path__)[0])' 2>/dev/null)
LIBS=""
for d in "$NV"/cu13/lib "$NV"/*/lib /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && LIBS="$LIBS:$d"
done
# Recent PyTorch wheels bring no cuRAND (2.15's do not): look for libcurand.so.10 elsewhere too.
if ! ls ${LIBS//:/ } 2>/dev/null | grep -q '^libcurand.so.10'; then
    CURAND=$(find /usr /opt "$NV" -name 'libcurand.so.10*' -print -quit 2>/dev/null)
    [ -n "$CURAND" ] && LIBS="$LIBS:$(dirname "$CURAND")"
fi
export LD_LIBRARY_PATH="${LIBS#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{
    echo "date: $(date -u +%FT%TZ)"
    nvidia-smi 2>&1 | head -n 15
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))' 2>&1
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    echo "ldd $XT:"; ldd "$XT" 2>&1 | grep -E "cuda|cublas|curand|nvrtc|not found"
    nproc; uptime
} >"$OUT/env.txt" 2>&1
if ldd "$XT" | grep -q "not found"; then
    note "libraries not found (env.txt): $(ldd "$XT" | grep 'not found' | tr -s ' \t' ' ') (cuRAND: pip install nvidia-curand, then rerun)"
    exit 1
fi
note "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"

# --- The data ----------------------------------------------------------------------------------
if [ ! -d "$DATA/mnist_m" ]; then
    IFS=: read -r -a PARTS <<<"$DATA"
    step "unpack data" 120 "$PY" xtask/gpu/unpack_digits.py /tmp/adapt-data "${PARTS[@]}" || exit 1
    DATA=/tmp/adapt-data
fi
[ -d "$DATA/mnist" ] && [ -d "$DATA/mnist_m" ] || { note "$DATA holds no mnist/ and mnist_m/"; exit 1; }
RUNS=/tmp/adapt-runs
rm -rf "$RUNS"; mkdir -p "$RUNS"

# candle compiles its PTX for this GPU at first use; the driver caches it for the later steps.
export CUDA_CACHE_MAXSIZE=1073741824

# 1. The generic path on CUDA against the fast CPU kernels (values and gradients per op,
#    optimizers, 4 DANN steps).
export ADAPT_REQUIRE_CUDA=1
LAST_OUT=""
step "tests: generic_path on CUDA" 150 "$TESTS" --test-threads 1
[ -n "$LAST_OUT" ] && { echo '```' >>"$SUM"; echo "$LAST_OUT" | grep -E "^test |test result" >>"$SUM"; echo '```' >>"$SUM"; }

# 2. The DANN step against PyTorch on the same GPU (issue: ours >= 1.2x PyTorch's images/s).
step "bench mnist cuda vs pytorch cuda" 150 "$XT" --json bench --device cuda --net mnist \
    --steps 100 --warmup 10 --rounds 3 --against-pytorch "$PY" --peer-dir xtask/peer \
    && { echo '```' >>"$SUM"; echo "$LAST_OUT" | head -n -1 >>"$SUM"; echo '```' >>"$SUM"; }

# 3. The toy on CUDA.
step "toy seed 0 cuda" 60 "$XT" --json train --device cuda --seed 0 --quiet --out "$RUNS/toy" \
    && { echo '```' >>"$SUM"; echo "$LAST_OUT" | head -n -1 >>"$SUM"; echo '```' >>"$SUM"; }

# 4. The paper-length DANN MNIST -> MNIST-M (issue: within seed noise of CPU, <= 20 s on an H200).
mm() {
    step "dann mnist->mnist-m seed $1 cuda" "$2" "$XT" --json train --device cuda --method dann --source mnist \
        --target mnist-m --seed "$1" --data-dir "$DATA" --quiet --out "$RUNS/mm-$1" \
        && { echo '```' >>"$SUM"; echo "$LAST_OUT" | head -n -1 >>"$SUM"; echo '```' >>"$SUM"; }
}
mm 0 150

# 5. A GTA iteration (batch 100 + 100) against PyTorch.
step "bench gta cuda vs pytorch cuda" 120 "$XT" --json bench --device cuda --net gta --batch 100 \
    --steps 10 --warmup 2 --rounds 1 --against-pytorch "$PY" --peer-dir xtask/peer \
    && { echo '```' >>"$SUM"; echo "$LAST_OUT" | head -n -1 >>"$SUM"; echo '```' >>"$SUM"; }

# 6. Seed noise: seeds 1 and 2.
mm 1 90
mm 2 90

cp "$RUNS"/mm-0/report.md "$OUT/mm0_report.md" 2>/dev/null
note "total $(( $(date +%s) - START )) s"
