"""The reference: every way it arrives (image files or arrays with masks, QuPath annotations on a
slide, negative examples), read and rescaled to the working resolution (`request`), encoded and
calibrated once for whole slides (`prepare`), and kept on disk, signed (`cache`)."""

from wsi_sat.reference.images import Reference, ReferenceInput
from wsi_sat.reference.prepare import SlideReference, prepare_slide_reference
from wsi_sat.reference.request import ReferenceRequest, ReferenceSet, read_references

__all__ = ["Reference", "ReferenceInput", "ReferenceRequest", "ReferenceSet", "SlideReference",
           "prepare_slide_reference", "read_references"]
