"""Use wsi-sat from Python: segment images like a reference, then a whole slide."""

from pathlib import Path

from wsi_sat.config import load_config
from wsi_sat.io.image import read_image
from wsi_sat.io.reference import load_reference
from wsi_sat.pipeline import RunOptions, run_slide
from wsi_sat.runtime import register_segmenter
from wsi_sat.sat.segment import Segmenter

config = load_config(None, ["runtime.device=auto", "wsi.workers=0"])
segmenter = Segmenter.from_config(config)  # models load once
ref = load_reference(Path("ref.png"))  # mask from ref_mask.png beside it, or the alpha channel
reference = segmenter.prepare_reference([(ref.image, ref.mask)], [ref.name])  # encoded once

image, _ = read_image(Path("target.png"))
result = segmenter.segment([image], reference)[0]
print(result.mask.shape, result.mode, result.mask.mean())

register_segmenter(config, segmenter)  # in-process whole-slide run reuses the loaded models
summary = run_slide(Path("slide.svs"), reference, {"names": [ref.name]}, config,
                    RunOptions(Path("results")), client=None, model_info={})
print(summary)
