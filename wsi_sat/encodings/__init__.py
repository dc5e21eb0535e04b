"""Encoder outputs kept for reruns: a slide's tile encodings (`tiles.TileEncodings`) and the
reference views' (`views.ViewEncodings`), both at the store's precision (`wsi.encodings_dtype`)
whether kept on disk or not, so a rerun that reuses them decides exactly as a fresh run would.

A rerun with corrections (more examples, other classes) encodes only what is new: the encoder
pass is paid once per slide and model; the decision is cheap and re-runnable."""

from wsi_sat.encodings.arrays import rounded
from wsi_sat.encodings.tiles import TileEncodings, encodings_root, tiles_key
from wsi_sat.encodings.views import ViewEncodings

__all__ = ["TileEncodings", "ViewEncodings", "encodings_root", "rounded", "tiles_key"]
