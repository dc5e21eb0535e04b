#!/usr/bin/env bash
# GPU check, short and self-contained (installs nothing): the engine on CUDA, then (where the
# slide readers are installed) the whole-slide throughput benchmark on CUDA.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]     # from the repository root, after `make install`
#
# Needs an NVIDIA GPU visible to torch, the project's .venv (or PYTHON=...) and the GlaS tile set
# (../shared/data/tiles/glas_colon_glands, or GLAS=DIR). Under 5 minutes on one H100/H200:
#   1. benchmarks/gpu_check.py: encoder ms per tile fp32 / bf16, fp32 vs bf16 agreement, tiles/s
#      end to end (tiles in memory) with 1 / 4 / 8 lanes and the SAT ms per tile after the encoder;
#   2. benchmarks/throughput.py on a dense + sparse 10k slide (needs tiffslide and zarr).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
OUT="${1:-bench_out}"
mkdir -p "$OUT"
GLAS_ARGS=()
if [ -n "${GLAS:-}" ]; then GLAS_ARGS=(--glas "$GLAS"); fi
"$PYTHON" benchmarks/gpu_check.py "${GLAS_ARGS[@]}" --out "$OUT/gpu_check.json"
if "$PYTHON" -c "import tiffslide, zarr" 2>/dev/null; then
    "$PYTHON" benchmarks/throughput.py --device cuda --sizes 10000 --workers 1 --naive-tiles 16 \
        --variant-tiles 0 --out "$OUT/throughput_cuda.json"
else
    echo "tiffslide / zarr not installed: the whole-slide throughput part is skipped"
fi
