"""One reader over tiffslide (default) and openslide (DICOM, formats tiffslide cannot open).

`Slide.read(box_level0, out_size)` reads a level-0 box at the pyramid level closest to (and not
coarser than) the requested output resolution and resamples it; regions outside the slide
come back white, as empty glass.
"""

from __future__ import annotations

import glob
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from wsi_sat.errors import MissingMppError, SlideReadError
from wsi_sat.io.tiff_tiles import TiledLevel, tiled_level

log = logging.getLogger(__name__)

# longest first: a slide's output name drops the whole suffix (`case.ome.tif` → `case`)
SLIDE_SUFFIXES = (".ome.tiff", ".ome.tif", ".svs", ".ndpi", ".tiff", ".tif", ".scn", ".mrxs",
                  ".vms", ".svslide", ".bif", ".dcm")


def opaque_rgb(region: Image.Image, ycbcr: bool = False) -> Image.Image:
    """A read region in RGB with its transparent pixels (outside the scanned area) white; in
    YCbCr frames white is (255, 128, 128). Opaque regions (every RGB TIFF, most of a slide read
    through OpenSlide) skip the compositing, which would give them back unchanged."""
    if region.mode == "RGB":
        return region
    if region.mode == "RGBA" and region.getextrema()[3][0] == 255:
        return region.convert("RGB")
    region = region.convert("RGBA")
    white = Image.new("RGBA", region.size, (255, 128, 128, 255) if ycbcr else
                      (255, 255, 255, 255))
    return Image.alpha_composite(white, region).convert("RGB")


def opaque_rgb_array(region: np.ndarray, ycbcr: bool = False) -> np.ndarray:
    """`opaque_rgb` of a region read as an array (tiffslide's `as_array`), without a round trip
    through PIL where the pixels are already opaque RGB: 8-bit RGB as it is, 8-bit RGBA with
    every pixel opaque without its alpha; anything else through PIL as `opaque_rgb` (the image
    PIL makes of the array, as tiffslide's own PIL path does)."""
    if region.dtype == np.uint8 and region.ndim == 3:
        if region.shape[2] == 3:
            return region
        if region.shape[2] == 4 and (region.size == 0 or region[..., 3].min() == 255):
            return np.ascontiguousarray(region[..., :3])
    image = Image.fromarray(region[..., 0] if region.ndim == 3 and region.shape[2] == 1
                            else region)
    return np.asarray(opaque_rgb(image, ycbcr))


@dataclass(frozen=True)
class SlideInfo:
    path: str
    backend: str
    level0_size: tuple[int, int]  # (w, h)
    mpp: float | None
    level_downsamples: tuple[float, ...]
    level_dimensions: tuple[tuple[int, int], ...]


def _dicom_file(path: Path) -> Path:
    files = sorted(path.glob("*.dcm"))
    if not files:
        raise SlideReadError(f"folder '{path}' holds no .dcm files; pass a slide file")
    return files[0]


def _open(path: Path) -> tuple[Any, str]:
    if not path.exists():
        raise SlideReadError(f"slide '{path}' not found; check the path")
    target = _dicom_file(path) if path.is_dir() else path
    errors = []
    if target.suffix.lower() != ".dcm":
        try:
            import tiffslide

            return tiffslide.TiffSlide(target), "tiffslide"
        except Exception as exc:  # noqa: BLE001 - any failure falls through to openslide
            errors.append(f"tiffslide: {exc.__class__.__name__}")
    try:
        import openslide

        return openslide.OpenSlide(str(target)), "openslide"
    except Exception as exc:  # noqa: BLE001
        errors.append(f"openslide: {exc.__class__.__name__}")
    raise SlideReadError(
        f"cannot open '{path}' as a slide ({'; '.join(errors)}); use SVS, NDPI, (pyramidal) "
        "TIFF or a DICOM WSI folder"
    )


def _mpp(props: Any, backend: str) -> float | None:
    for key in (f"{backend}.mpp-x", "openslide.mpp-x", "tiffslide.mpp-x"):
        value = props.get(key)
        if value not in (None, "", "0"):
            try:
                mpp = float(value)
            except (TypeError, ValueError):
                continue
            if mpp > 0:
                return mpp
    return None


def _bounds(props: Any, backend: str) -> tuple[int, int]:
    """The offset (x, y) of the slide's non-empty region in level-0 pixels, as openslide reports
    it (`openslide.bounds-x/-y`: MRXS, SCN, some Ventana/Philips files); QuPath crops its image
    to it, so its coordinates are level-0 pixels less this offset. (0, 0) when absent."""
    out = []
    for axis in ("x", "y"):
        value = None
        for key in (f"{backend}.bounds-{axis}", f"openslide.bounds-{axis}"):
            if props.get(key) not in (None, ""):
                value = props.get(key)
                break
        try:
            out.append(int(value) if value is not None else 0)
        except (TypeError, ValueError):
            out.append(0)
    return out[0], out[1]


def _looks_ycbcr(rgb: np.ndarray) -> bool:
    """Whether a thumbnail's border (glass) reads like YCbCr taken for RGB: both chroma channels
    at their neutral 128 (within 10) while the first channel is far from grey (a white glass
    reads (235, 128, 130); a real RGB slide with such a background would be deep red)."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.float32)
    y, cb, cr = np.median(border, axis=0)
    return abs(cb - 128) < 10 and abs(cr - 128) < 10 and abs(y - 128) > 40


def _ycbcr_to_rgb(img: np.ndarray) -> np.ndarray:
    """JPEG's full-range YCbCr (BT.601) to RGB; OpenCV orders the chroma Cr, Cb."""
    return cv2.cvtColor(np.ascontiguousarray(img[..., [0, 2, 1]]), cv2.COLOR_YCrCb2RGB)


def _sample_dtype(handle: Any, backend: str) -> np.dtype | None:
    """The sample type of level 0 as tiffslide reads it (None: openslide, always 8-bit RGBA,
    or not known without reading pixels)."""
    if backend != "tiffslide":
        return None
    try:
        return np.dtype(handle.zarr_group["0"].dtype) if hasattr(handle, "zarr_group") \
            else None
    except Exception:  # noqa: BLE001 - a level that cannot be opened is reported on reading
        return None


class Slide:
    def __init__(self, path: Path, mpp_override: float | None = None, *,
                 mpp_fallback: float | None = None, mpp_flag: str = "--slide-mpp") -> None:
        """`mpp_override` replaces the metadata's pixel size; `mpp_fallback` stands in only
        where the metadata has none; `mpp_flag` is the option a missing one asks for."""
        self.path = Path(path)
        self._slide, self.backend = _open(self.path)
        self._ycbcr = False
        self._tiled: dict[int, TiledLevel | None] = {}  # tiffslide levels read tile by tile
        try:
            meta_mpp = _mpp(self._slide.properties, self.backend)
            self.bounds_xy = _bounds(self._slide.properties, self.backend)  # QuPath's origin
            dims = tuple(tuple(int(v) for v in d) for d in self._slide.level_dimensions)
            downsamples = tuple(float(d) for d in self._slide.level_downsamples)
        except Exception as exc:  # noqa: BLE001 - readers fail on broken files in many ways
            self._slide.close()
            raise SlideReadError(f"cannot read the structure of '{self.path.name}' "
                                 f"({exc.__class__.__name__}); the file may be truncated or "
                                 "corrupt") from None
        self.mpp = mpp_override or meta_mpp or mpp_fallback
        self._mpp_flag = mpp_flag
        self.info = SlideInfo(str(self.path), self.backend, dims[0] if dims else (0, 0),
                              self.mpp, downsamples, dims)
        self._check_levels()
        props = self._slide.properties
        if (props.get("openslide.vendor") == "dicom"
                and props.get("dicom.PhotometricInterpretation") == "RGB"
                and str(props.get("dicom.TransferSyntaxUID", "")).startswith("1.2.840.10008.1.2.4.5")
                and _looks_ycbcr(self.thumbnail(256)[0])):
            # a JPEG-baseline DICOM whose header says RGB but whose frames are YCbCr (some
            # converters write it so): openslide decodes them as RGB, in false colour
            log.warning("'%s': the DICOM header says RGB but its JPEG frames hold YCbCr; "
                        "converting to RGB", self.path.name)
            self._ycbcr = True
    def _check_levels(self) -> None:
        """Every level has pixels and a finite downsample, and level 0 holds 8-bit samples."""
        info = self.info
        if not info.level_dimensions or any(w < 1 or h < 1 for w, h in info.level_dimensions) \
                or not all(np.isfinite(d) and d > 0 for d in info.level_downsamples):
            self._slide.close()
            raise SlideReadError(f"'{self.path.name}' has a pyramid level without pixels "
                                 f"(levels {list(info.level_dimensions)}); the file is damaged "
                                 "or not a slide: export it again")
        dtype = _sample_dtype(self._slide, self.backend)
        if dtype is not None and dtype != np.uint8:
            self._slide.close()
            raise SlideReadError(f"'{self.path.name}' stores {dtype} samples; wsi-sat reads 8-bit "
                                 "RGB brightfield slides: export it with 8 bits per channel "
                                 "(e.g. from QuPath or with vips)")

    def pyramid_arrays(self) -> list[Any] | None:
        """The slide's pyramid levels as lazy zarr arrays (y, x, RGB uint8), level 0 first,
        where tiffslide reads it (a viewer's image layer); else None."""
        group = getattr(self._slide, "zarr_group", None) if self.backend == "tiffslide" else None
        try:
            keys = sorted(group.array_keys(), key=int) if group is not None else []
            arrays = [group[k] for k in keys]
        except Exception:  # noqa: BLE001 - a layout tiffslide cannot give as zarr
            return None
        ok = arrays and all(a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
                            for a in arrays)
        return arrays if ok else None

    def require_mpp(self) -> float:
        if self.mpp is None:
            raise MissingMppError(
                f"slide '{self.path.name}' has no pixel size (µm/px) in its metadata; pass "
                f"{self._mpp_flag} (e.g. 0.25 for 40x, 0.5 for 20x)"
            )
        return self.mpp

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.info.level0_size

    def best_level(self, downsample: float) -> int:
        """Coarsest level whose downsample does not exceed `downsample` (no upsampling)."""
        best = 0
        for i, d in enumerate(self.info.level_downsamples):
            if d <= downsample * 1.001:
                best = i
        return best

    def read(self, x: float, y: float, w: float, h: float, out_size: tuple[int, int]
             ) -> np.ndarray:
        """RGB uint8 (out_h, out_w, 3) of the level-0 box (x, y, w, h)."""
        out_w, out_h = out_size
        level = self.best_level(min(w / out_w, h / out_h))
        d = self.info.level_downsamples[level]
        lw, lh = max(1, int(round(w / d))), max(1, int(round(h / d)))
        location = (int(round(x)), int(round(y)))
        try:
            if self.backend == "tiffslide":  # its array, not a PIL image made of it
                rgb = opaque_rgb_array(self._read_tiffslide(location, level, (lw, lh)),
                                       self._ycbcr)
            else:
                rgb = np.asarray(opaque_rgb(self._slide.read_region(location, level, (lw, lh)),
                                            self._ycbcr))
        except Exception as exc:  # noqa: BLE001 - reader-specific errors
            raise SlideReadError(
                f"reading '{self.path.name}' level {level} at ({x:.0f}, {y:.0f}) failed "
                f"({exc.__class__.__name__}); the file may be truncated or corrupt"
            ) from None
        if rgb.shape[:2] != (out_h, out_w):
            rgb = np.asarray(Image.fromarray(rgb).resize(
                (out_w, out_h), Image.Resampling.BOX if lw > out_w else
                Image.Resampling.BILINEAR))
        return _ycbcr_to_rgb(rgb) if self._ycbcr else rgb

    def _read_tiffslide(self, location: tuple[int, int], level: int, size: tuple[int, int]
                        ) -> np.ndarray:
        """tiffslide's `read_region` array, decoded straight from the level's tiles where that
        reads the same pixels (wsi_sat.io.tiff_tiles; tiffslide's level coordinates)."""
        if level not in self._tiled:
            self._tiled[level] = tiled_level(self._slide, level)
        tiled = self._tiled[level]
        if tiled is not None:
            d = self.info.level_downsamples[level]
            region = tiled.read(int(location[0] / d), int(location[1] / d), *size)
            if region is not None:
                return region
        return self._slide.read_region(location, level, size, as_array=True)

    def read_padded(self, x: float, y: float, w: float, h: float, out_size: tuple[int, int]
                    ) -> np.ndarray:
        """Like `read`, for boxes that may extend past the slide: the outside is white."""
        w0, h0 = self.dimensions
        cx0, cy0 = max(0.0, x), max(0.0, y)
        cx1, cy1 = min(float(w0), x + w), min(float(h0), y + h)
        out_w, out_h = out_size
        if (cx0, cy0, cx1, cy1) == (x, y, x + w, y + h):  # within the slide: no canvas
            rgb = self.read(x, y, w, h, out_size)
            return rgb if rgb.flags.writeable else rgb.copy()  # a canvas of its own, as below
        canvas = np.full((out_h, out_w, 3), 255, np.uint8)
        if cx1 <= cx0 or cy1 <= cy0:
            return canvas
        sx, sy = out_w / w, out_h / h
        px0, py0 = int(round((cx0 - x) * sx)), int(round((cy0 - y) * sy))
        px1, py1 = int(round((cx1 - x) * sx)), int(round((cy1 - y) * sy))
        if px1 > px0 and py1 > py0:
            canvas[py0:py1, px0:px1] = self.read(cx0, cy0, cx1 - cx0, cy1 - cy0,
                                                 (px1 - px0, py1 - py0))
        return canvas

    def thumbnail(self, max_px: int) -> tuple[np.ndarray, float]:
        """RGB thumbnail whose longer side is at most `max_px`; returns it and its downsample."""
        w0, h0 = self.dimensions
        ds = max(w0, h0) / max_px
        out = (max(1, int(w0 / ds)), max(1, int(h0 / ds)))
        return self.read(0, 0, w0, h0, out), ds

    def close(self) -> None:
        self._slide.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def probe_slide(path: Path, mpp_override: float | None = None) -> None:
    """Open a slide and check its pixel size (SlideReadError / MissingMppError), then close it."""
    with Slide(Path(path), mpp_override) as slide:
        slide.require_mpp()


@dataclass(frozen=True)
class SlideSource:
    """A slide to segment and the pixel size given for it (a slide list's second column;
    None: its metadata, or --slide-mpp)."""

    path: Path
    mpp: float | None = None


LIST_SUFFIXES = (".csv", ".tsv", ".txt")
MPP_RANGE = (0.01, 100.0)  # a plausible level-0 pixel size, µm/px


def read_slide_list(path: Path) -> list[SlideSource]:
    """A slide list: one slide per line, `path[,mpp]` (a tab in .tsv; a header row starting
    `path` and lines starting `#` are skipped); relative paths are relative to the list."""
    import csv

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SlideReadError(f"cannot read the slide list '{path}' ({exc.__class__.__name__})"
                             ) from None
    rows = csv.reader(text.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv"
                      else ",")
    out = []
    for n, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not cells or not cells[0] or cells[0].startswith("#") or \
                (n == 1 and cells[0].lower() == "path"):
            continue
        slide = Path(cells[0]) if Path(cells[0]).is_absolute() else path.parent / cells[0]
        where = f"line {n} of '{path}'"
        if not slide.exists():
            raise SlideReadError(f"slide '{slide}' ({where}) not found; check the path")
        mpp = None
        if len(cells) > 1 and cells[1]:
            try:
                mpp = float(cells[1])
            except ValueError:
                mpp = float("nan")
            if not MPP_RANGE[0] <= mpp <= MPP_RANGE[1]:
                raise SlideReadError(f"'{cells[1]}' ({where}) is not a plausible pixel size "
                                     "(µm/px, 0.01-100; 0.25 = 40x, 0.5 = 20x)")
        out.append(SlideSource(slide, mpp))
    if not out:
        raise SlideReadError(f"the slide list '{path}' names no slide")
    return out


def list_slides(items: tuple[str, ...] | list[str]) -> list[SlideSource]:
    """Slides from files, folders (slides inside; a folder of .dcm files is one DICOM slide),
    glob patterns (a cohort) and slide lists (.csv / .tsv / .txt: `path[,mpp]` per line, a
    cohort whose slides each need their own pixel size)."""
    out: list[SlideSource] = []
    for item in items:
        matches = sorted(glob.glob(item)) if any(c in item for c in "*?[") else [item]
        if not matches:
            raise SlideReadError(f"no slide matches '{item}'")
        for m in map(Path, matches):
            if m.is_file() and m.suffix.lower() in LIST_SUFFIXES:
                out += read_slide_list(m)
            elif m.is_dir() and not any(m.glob("*.dcm")):
                found = sorted(p for p in m.iterdir() if p.name.lower().endswith(SLIDE_SUFFIXES)
                               or (p.is_dir() and any(p.glob("*.dcm"))))
                if not found:
                    raise SlideReadError(f"folder '{m}' holds no slides")
                out += [SlideSource(p) for p in found]
            elif m.exists():
                out.append(SlideSource(m))
            else:
                raise SlideReadError(f"slide '{m}' not found; check the path")
    return out
