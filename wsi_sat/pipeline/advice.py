"""What a slide's result says about the run, in words a user can act on: one line each, on
stderr, in run.json (`warnings`) and in summary.csv. Read from the run's own record; they change
no result."""

from __future__ import annotations

from typing import Any

NEARLY_EMPTY = 0.001  # target below this fraction of the tissue: "nearly empty"
MOSTLY_NEVER_SHOWN = 0.8  # the survey called more than this fraction of the tissue never shown
POOR_SELF_DICE = 0.6  # the reference reproduces its own mask below this Dice


def slide_warnings(record: dict[str, Any]) -> list[str]:
    """The warnings of a finished slide's run.json record (before `warnings` is added)."""
    out = []
    tissue = record.get("tissue", {}).get("area_mm2", 0.0)
    target = record.get("target_area_mm2", 0.0)
    survey = record.get("open_set", {})
    novel = survey.get("background", {}).get("novel_fraction")
    self_dice = record.get("calibration", {}).get("scores", {}).get("threshold_dice")
    if not tissue:
        out.append("no tissue found: check the slide (a blank or fluorescence scan needs "
                   "wsi.tissue_min_contrast) or its pixel size")
    elif record.get("objects", 0) == 0 or target < NEARLY_EMPTY * tissue:
        reason = (f"the survey called {novel:.0%} of the tissue never shown by the reference"
                  if novel is not None and novel > MOSTLY_NEVER_SHOWN else
                  "no tissue matched the reference")
        out.append(f"{'empty' if record.get('objects', 0) == 0 else 'nearly empty'} result: "
                   f"{reason}; if the target is on this slide, outline one example of it here "
                   "and rerun with --reference-geojson (also check --mpp / --slide-mpp)")
    elif novel is not None and novel > MOSTLY_NEVER_SHOWN:
        out.append(f"the survey called {novel:.0%} of the tissue never shown by the "
                   "reference: variants of the target unlike it are missed; add an example "
                   "from this slide (--reference-geojson)")
    if self_dice is not None and self_dice < POOR_SELF_DICE:
        out.append(f"the reference reproduces its own mask poorly (Dice {self_dice:.2f} on "
                   "its held-out views): check the mask, or give a larger or second example")
    flagged = record.get("objects_flagged", {})
    if flagged.get("large") or flagged.get("small"):
        out.append(f"{flagged.get('large', 0)} objects far larger and {flagged.get('small', 0)} "
                   "far smaller than the reference's (objects.csv size_flag): merged or split "
                   "objects, or another structure; check them before counting, or give a "
                   "reference at this slide's scale (--reference-mpp)")
    if survey.get("decision", {}).get("fitted") is False:
        out.append("the slide's decision could not be fitted (too few confident patches): "
                   "tiles were judged one by one; add an example from this slide")
    return out
