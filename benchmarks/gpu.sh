#!/usr/bin/env bash
# Every GPU figure in one command, on a machine with an NVIDIA GPU, PyTorch and transformers, and no
# network (BENCHMARKS.md, "Speed on a GPU"):
#
#     make gpu-wheels                  # here, with PyPI: the packages such a machine lacks (about 5 MB)
#     bash benchmarks/gpu.sh [OUTDIR]  # there, with benchmarks/wheels/ beside it
#
# It installs, from benchmarks/wheels/, only the packages that machine's python3 cannot import
# (into a folder of its own: nothing of the machine's changes), then measures, each in a process of
# its own and within a time budget (about 8 minutes in all): the original's workload (ldm), SD 1.5
# at 512 px, SDXL at 1024 px (benchmarks/gpu_speed.py: a plain diffusers loop against ours at the
# auto batch, the best batch, and with the accelerations), and the esrgan x2 upscale
# (benchmarks/upscale_speed.py at the auto batch and fixed ones). The table lands in
# OUTDIR/gpu-table.md (default: $OUT where set, else benchmarks/gpu-out), the whole log in
# OUTDIR/gpu-log.txt. A workload that fails or runs out of time leaves the others' rows.
# GPU_SH_TINY=1 runs the same steps on tiny models (any machine, a minute or two): a check of this
# script, not a figure.
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-benchmarks/gpu-out}}
PY=${PYTHON:-python3}
SITE=${GALLERY_GPU_SITE:-/tmp/gallery-gpu-site}
mkdir -p "$OUTDIR"
TABLE=$OUTDIR/gpu-table.md
LOG=$OUTDIR/gpu-log.txt
: >"$TABLE"
exec > >(tee "$LOG") 2>&1
started=$(date +%s)

# The wheels whose import name the machine lacks; a wheel file's name starts with its project name.
missing=()
for wheel in benchmarks/wheels/*.whl; do
    [ -e "$wheel" ] || { echo "no wheels in benchmarks/wheels/: run 'make gpu-wheels' where PyPI is reachable"; break; }
    project=$(basename "$wheel" | cut -d- -f1)
    case $project in
        open_clip_torch) module=open_clip ;;
        *) module=$project ;;
    esac
    if ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module') is None)"; then
        missing+=("$wheel")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing into $SITE: ${missing[*]##*/}"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${missing[@]}" ||
        { echo "could not install the wheels"; exit 1; }
fi
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv || true
"$PY" -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"

# Each workload: its budget in seconds (the script keeps within it; `timeout` stops a hang).
status=0
tiny=()
upscale=(--workload x2plus --images 16 --repeats 1 --batch auto,16)
if [ "${GPU_SH_TINY:-}" = 1 ]; then
    tiny=(--tiny --no-compile --repeats 1)
    upscale=(--workload tiny --images 4 --repeats 1 --batch auto,2)
fi
for item in ldm:190 sd15:150 sdxl:100; do
    name=${item%%:*}
    budget=${item##*:}
    timeout --kill-after=10 $((budget + 40)) "$PY" benchmarks/gpu_speed.py --workload "$name" --budget "$budget" \
        --table "$TABLE" "${tiny[@]}" || { echo "!! $name failed or ran out of time (exit $?)"; echo "$name: FAILED, see the log" >>"$TABLE"; status=1; }
done
echo "== esrgan x2" | tee -a "$TABLE"
timeout --kill-after=10 45 "$PY" benchmarks/upscale_speed.py "${upscale[@]}" | tee -a "$TABLE" || { echo "!! esrgan failed"; status=1; }
echo "gpu.sh: $(($(date +%s) - started))s in all; table: $TABLE" | tee -a "$TABLE"
exit $status
