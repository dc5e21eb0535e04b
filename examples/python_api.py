"""Use wsi-sat from Python: segment images like a reference, then a whole slide.

    python examples/python_api.py REF.png SLIDE.svs OUT_DIR [--reference-mpp 0.5] [--mpp 1.0]
        [--set key=value]

Gives the same outputs as `wsi-sat run SLIDE --reference REF.png --reference-mpp ... --mpp ...
--out OUT_DIR` (tests/slow/test_python_api.py compares them).
"""

import argparse
from pathlib import Path

from wsi_sat import api

parser = argparse.ArgumentParser()
parser.add_argument("reference", type=Path, help="reference image; mask: <stem>_mask.png")
parser.add_argument("slide", type=Path)
parser.add_argument("out", type=Path)
parser.add_argument("--reference-mpp", type=float, default=None)
parser.add_argument("--mpp", type=float, default=None, help="working resolution, µm/px")
parser.add_argument("--set", action="append", default=[], help="config key=value")
args = parser.parse_args()

config = api.load_config(None, args.set)
segmenter = api.load_segmenter(config)  # models load once

# images: a reference (mask beside it or in its alpha channel), encoded once
request = api.ReferenceRequest(images=[args.reference])
embedding = api.prepare_image_reference(segmenter, request)
result = next(api.segment_images([args.reference], embedding, segmenter))
print(f"reference segmented like itself: {100 * result.foreground:.1f} % foreground")

# a whole slide: the reference prepared once for tiles, then any number of slides
reference = api.prepare_reference(segmenter, api.ReferenceRequest(
    images=[args.reference], reference_mpp=args.reference_mpp, working_mpp=args.mpp))
summary = api.run_slide(args.slide, reference, segmenter, out_dir=args.out, mpp=args.mpp)
print(summary)
