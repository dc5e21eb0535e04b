#!/usr/bin/env bash
# GPU check: the throughput benchmark on CUDA, short and self-contained (installs nothing).
#
#   bash benchmarks/gpu_check.sh            # from the repository root, after `make install`
#
# Needs: an NVIDIA GPU visible to torch, the project's .venv (or PYTHON=...), and
# ../shared/data/tiles/glas_colon_glands. Runs in well under 5 minutes on one H100:
#   1. which device and precision the encoder uses (bf16 autocast where supported);
#   2. fp32 vs autocast agreement of the embeddings and of the segmentation on real tiles;
#   3. benchmarks/throughput.py on a 10k dense + sparse slide with 1 worker (tiles/s, ratios).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
"$PYTHON" - <<'PY'
import sys, time
import numpy as np, torch
sys.path.insert(0, ".")
from wsi_sat.config import load_config
from wsi_sat.sat.segment import Segmenter
from benchmarks.throughput import glas_images

assert torch.cuda.is_available(), "no CUDA GPU visible to torch"
print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__)
pairs, ref = glas_images()
tiles = [np.ascontiguousarray(np.pad(p[0][:1024, :1024], ((0, max(0, 1024 - p[0].shape[0])),
         (0, max(0, 1024 - p[0].shape[1])), (0, 0)), constant_values=255)) for p in pairs[:16]]
out = {}
for precision in ("fp32", "auto"):
    cfg = load_config(None, ["runtime.device=cuda", f"runtime.precision={precision}"])
    seg = Segmenter.from_config(cfg)
    reference = seg.prepare_reference([ref], encode_scale=1.0)
    seg.engine.encode(tiles[:8], 1.0); torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(0, 16, 8):
        seg.engine.encode(tiles[i:i + 8], 1.0)
    torch.cuda.synchronize()
    enc_s = (time.perf_counter() - t) / 16
    emb = seg.engine.encode(tiles[:4], 1.0)
    res = seg.segment(tiles, reference, encode_scale=1.0)
    out[precision] = (emb, [r.mask for r in res])
    print(f"{precision}: autocast {seg.engine.autocast}, encoder {enc_s * 1000:.1f} ms/tile "
          f"(batches of 8)")
cos = [torch.nn.functional.cosine_similarity(a.embedding.flatten(), b.embedding.flatten(),
                                             dim=0).item()
       for a, b in zip(out["fp32"][0], out["auto"][0])]
dice = [2 * (a & b).sum() / max(1, a.sum() + b.sum()) for a, b in zip(out["fp32"][1], out["auto"][1])]
print(f"fp32 vs auto: embedding cosine min {min(cos):.4f}; mask Dice mean {np.mean(dice):.4f}, "
      f"min {np.min(dice):.4f}")
PY
# the compiled-encoder comparison (--variant-tiles) is left out: inductor/Triton compiling
# can take minutes; run it apart with --variant-tiles 8
"$PYTHON" benchmarks/throughput.py --device cuda --sizes 10000 --workers 1 --naive-tiles 16 \
    --variant-tiles 0
