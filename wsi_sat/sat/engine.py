"""What the method needs from outside it: the models it runs on and the threads it may use.

The method (`wsi_sat.sat`) never imports a model or builds a thread pool. The caller hands it an
`Engine` (encode once, decode point prompts many times, as segment-anything's `SamPredictor`),
a `Backbone` (patch features of encoded images) and `Workers` (a map over its own threads);
`wsi_sat.models` implements the first two, `wsi_sat.segmenter` and the pipeline lend the third.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from wsi_sat.geometry import patch_centres_xy

T = TypeVar("T")
R = TypeVar("R")


class Encoding(Protocol):
    """One image after the image encoder: the embedding serves both matching and decoding."""

    embedding: torch.Tensor  # (C, G, G) on the engine's device
    original_hw: tuple[int, int]
    input_hw: tuple[int, int]

    @property
    def scale(self) -> float:
        """Encoder-input pixels per original pixel."""
        ...


class Engine(Protocol):
    """A promptable segmenter: images are encoded once and decoded from point prompts (x, y in
    original image pixels) as often as needed."""

    device: torch.device
    input_px: int  # the encoder's input side
    encoder_batch: int

    def encode(self, images: list[np.ndarray], scale: float | None = None) -> list[Any]:
        """One `Encoding` per image; `scale` fixes encoder px per image px (None: the longest
        side to the input)."""
        ...

    def decode(self, enc: Any, xy: np.ndarray, labels: np.ndarray,
               mask_input: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-resolution mask logits and predicted IoU of B prompt sets ((B, N, 2), (B, N))."""
        ...

    def upscale(self, enc: Any, low_logits: torch.Tensor) -> torch.Tensor:
        """Low-resolution logits at the original image size."""
        ...

    def map_to_mask_prompt(self, enc: Any, prob: np.ndarray, gain: float) -> torch.Tensor:
        """A probability map at image size as the decoder's mask prompt."""
        ...


@dataclass(frozen=True)
class PatchGrid:
    """Patch features of one image: feats (gh, gw, D) float32; patch (py, px) in original px."""

    feats: np.ndarray
    patch_hw: tuple[float, float]

    @property
    def grid_hw(self) -> tuple[int, int]:
        return self.feats.shape[0], self.feats.shape[1]

    def centres_xy(self) -> np.ndarray:
        """(gh*gw, 2) patch centres in original pixels, row-major."""
        return patch_centres_xy(self.grid_hw, self.patch_hw)


class Backbone(Protocol):
    """Patch features of encoded images (the engine's own embedding, or another model's)."""

    name: str

    def grids(self, images: list[np.ndarray], encoded: list[Any]) -> list[PatchGrid]: ...


def serial_map(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    return map(fn, items)


@dataclass(frozen=True)
class Workers:
    """Threads the caller lends the method: `map` runs a function over items on `count`
    threads (results in the items' order). The default is this thread alone."""

    count: int = 1
    map: Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]] = serial_map


ONE_THREAD = Workers()
