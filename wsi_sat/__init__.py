"""wsi-sat: one-shot, training-free segmentation (Segment Any Tissue) of whole-slide images."""

__version__ = "0.1.0"
