"""`<slide>.overview.png`: a thumbnail with the result in the class colour, the tissue outline
(blue), a scale bar in µm, and a legend below it: the class, its object count, its area and
its fraction of the tissue. A pathologist glancing at a folder of these sees what was found,
how much, and at what scale, without opening QuPath."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage.measure import find_contours

from wsi_sat.raster import resize_mask
from wsi_sat.writers.atomic import write_atomic

TISSUE_RGB = (30, 90, 255)
_NICE_UM = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)


@dataclass(frozen=True, kw_only=True)
class Legend:
    """What the overview states under the thumbnail."""

    class_name: str
    color_rgb: Sequence[int]
    objects: int
    target_mm2: float
    tissue_mm2: float
    target_in_tissue_mm2: float
    um_per_px: float  # of the thumbnail
    instances: bool = False

    def lines(self) -> list[str]:
        fraction = (100 * self.target_in_tissue_mm2 / self.tissue_mm2 if self.tissue_mm2
                    else 0.0)
        what = "objects" if self.instances else "regions"
        density = (f", {self.objects / self.tissue_mm2:.0f} per mm² of tissue"
                   if self.instances and self.tissue_mm2 else "")
        return [f"{self.class_name}: {self.objects} {what}{density}",
                f"{self.target_mm2:.3f} mm², {fraction:.1f} % of the tissue "
                f"({self.tissue_mm2:.2f} mm², outlined blue)"]


def scale_bar_um(um_per_px: float, width_px: int) -> float:
    """A round length (µm) near a fifth of the image's width."""
    target = width_px * um_per_px / 5
    fitting = [v for v in _NICE_UM if v <= target]
    return float(fitting[-1] if fitting else _NICE_UM[0])


# a system font with µ and ² (DejaVu ships with most Linux systems and the containers);
# Pillow's own font has neither, so without one the text is written in ASCII
_FONTS = ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "Arial.ttf")
_ASCII = {"µm": "um", "mm²": "mm2"}


def _font(size: int) -> tuple[ImageFont.ImageFont | ImageFont.FreeTypeFont, bool]:
    """A font of `size` px and whether it draws µ and ²."""
    for name in _FONTS:
        try:
            return ImageFont.truetype(name, size), True
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size), False
    except (TypeError, OSError):  # Pillow without FreeType: its bitmap font
        return ImageFont.load_default(), False


def _text(line: str, unicode_ok: bool) -> str:
    if not unicode_ok:
        for symbol, ascii_ in _ASCII.items():
            line = line.replace(symbol, ascii_)
    return line


def _draw_scale_bar(img: Image.Image, um_per_px: float) -> None:
    w, h = img.size
    um = scale_bar_um(um_per_px, w)
    length = max(1, round(um / um_per_px))
    font, unicode_ok = _font(max(10, min(w, h) // 40))
    label = _text(f"{um / 1000:g} mm" if um >= 1000 else f"{um:g} µm", unicode_ok)
    pad = max(4, w // 100)
    x0, y1 = pad, h - pad
    thick = max(3, h // 150)
    draw = ImageDraw.Draw(img)
    tw = draw.textlength(label, font=font)
    draw.rectangle([x0 - 3, y1 - thick - font.size - 9, x0 + max(length, tw) + 3, y1 + 3],
                   fill=(255, 255, 255))
    draw.rectangle([x0, y1 - thick, x0 + length, y1], fill=(0, 0, 0))
    draw.text((x0, y1 - thick - font.size - 5), label, fill=(0, 0, 0), font=font)


def _legend_panel(width: int, legend: Legend) -> Image.Image:
    font, unicode_ok = _font(max(12, min(22, width // 45)))
    line_h = int(font.size * 1.5)
    panel = Image.new("RGB", (width, line_h * 2 + 16), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    sw = font.size
    draw.rectangle([8, 8 + (line_h - sw) // 2, 8 + sw, 8 + (line_h - sw) // 2 + sw],
                   fill=tuple(int(c) for c in legend.color_rgb), outline=(0, 0, 0))
    for i, line in enumerate(legend.lines()):
        draw.text((16 + sw, 8 + i * line_h + (line_h - font.size) // 2),
                  _text(line, unicode_ok), fill=(0, 0, 0), font=font)
    return panel


def write_overview(path: Path, thumb: np.ndarray, tissue: np.ndarray, result: np.ndarray,
                   legend: Legend) -> None:
    """Draw `result` (any resolution, whole slide) half-transparent in the class colour over
    the RGB `thumb`, the outline of `tissue` (any resolution, whole slide) on top, a scale bar,
    and `legend` under it."""
    size = (thumb.shape[1], thumb.shape[0])
    result_img = resize_mask(result, size)
    tissue_img = resize_mask(tissue, size)
    out = thumb.astype(np.float32)
    out[result_img] = 0.45 * out[result_img] + 0.55 * np.asarray(legend.color_rgb[:3])
    img = Image.fromarray(out.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    # padded by one pixel: contours close along the border, and a 1-px-thin thumbnail works
    for contour in find_contours(np.pad(tissue_img.astype(np.uint8), 1), 0.5):
        draw.line([(float(c[1]) - 1, float(c[0]) - 1) for c in contour], fill=TISSUE_RGB,
                  width=2)
    if math.isfinite(legend.um_per_px) and legend.um_per_px > 0 and min(size) >= 32:
        _draw_scale_bar(img, legend.um_per_px)
    panel = _legend_panel(max(img.width, 360), legend)
    canvas = Image.new("RGB", (panel.width, img.height + panel.height), (255, 255, 255))
    canvas.paste(img, (0, 0))
    canvas.paste(panel, (0, img.height))
    write_atomic(Path(path), lambda p: canvas.save(p, format="PNG"))
