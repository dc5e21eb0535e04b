"""Plan one slide: resolution, tissue, tile grid, output paths and the batches (no tile is read
and no model runs here; the coarse pass that may narrow the tiles is pipeline/coarse.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wsi_sat.config import WsiConfig
from wsi_sat.errors import ConfigError, SlideReadError
from wsi_sat.geometry import Scale
from wsi_sat.io.slide import SLIDE_SUFFIXES, Slide
from wsi_sat.tiling.batches import batch_slices
from wsi_sat.tiling.grid import Grid, Tile, make_grid
from wsi_sat.tiling.tissue import TissueMasks, tissue_masks


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    out_dir: Path
    slide_mpp: float | None = None  # level-0 µm/px, overriding (or standing in for) metadata
    mpp: float | None = None  # working resolution; default: the reference's, else the slide's
    resume: bool = False
    max_batches: int | None = None  # stop after this many batches (testing resume)
    allow_upsampling: bool = False  # a working resolution finer than the slide's level 0
    slide_mpp_source: str = "--slide-mpp"  # where slide_mpp came from (run.json)


@dataclass(frozen=True)
class OutputPaths:
    """Where one slide's outputs go in the output folder."""

    stem: str
    out_dir: Path

    @property
    def zarr(self) -> Path:
        return self.out_dir / f"{self.stem}.ome.zarr"

    @property
    def partial(self) -> Path:
        return self.out_dir / f"{self.stem}.ome.zarr.partial"

    @property
    def shards(self) -> Path:
        return self.out_dir / f"{self.stem}.shards"

    def shard(self, batch: int) -> Path:
        return self.shards / f"batch_{batch:05d}.json"

    @property
    def geojson(self) -> Path:
        return self.out_dir / f"{self.stem}.geojson"

    @property
    def overview(self) -> Path:
        return self.out_dir / f"{self.stem}.overview.png"

    @property
    def run_json(self) -> Path:
        return self.out_dir / f"{self.stem}.run.json"

    @property
    def tissue_geojson(self) -> Path:
        return self.out_dir / f"{self.stem}.tissue.geojson"

    @property
    def objects_csv(self) -> Path:
        return self.out_dir / f"{self.stem}.objects.csv"

    @property
    def manifest(self) -> Path:
        return self.out_dir / f"{self.stem}.manifest.json"

    def leftover_parts(self) -> list[Path]:
        """Temporary files of this slide's atomic writes that a killed run left behind."""
        found = list(self.out_dir.glob(f".{self.stem}.*.part"))
        if self.shards.is_dir():
            found += list(self.shards.glob(".*.part"))
        return found

    @property
    def lock(self) -> Path:
        return self.out_dir / f"{self.stem}.lock"

    def outputs(self) -> dict[str, str]:
        return {"zarr": str(self.zarr), "geojson": str(self.geojson),
                "run": str(self.run_json), "overview": str(self.overview),
                "tissue": str(self.tissue_geojson), "objects": str(self.objects_csv),
                "manifest": str(self.manifest)}


def output_stem(slide_path: Path) -> str:
    """The name of a slide's outputs: the whole file name less its slide suffix
    (`case1.HE.svs` → `case1.HE`; a DICOM folder: the folder name)."""
    path = Path(slide_path)
    if not path.is_file():
        return path.name
    lower = path.name.lower()
    for suffix in SLIDE_SUFFIXES:
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return path.name[: -len(suffix)]
    return path.stem or path.name


def check_output_names(slides: list[Path]) -> None:
    """Two slides of one run must not write the same outputs."""
    seen: dict[str, Path] = {}
    for path in slides:
        stem = output_stem(path)
        if stem in seen:
            raise SlideReadError(
                f"'{seen[stem]}' and '{path}' would both write '{stem}.*' in --out; rename "
                "one, or run them into different --out folders")
        seen[stem] = path


MAX_GRID_TILES = 10_000_000
MIN_SLIDE_PX = 32  # a slide side at the working resolution must hold two encoder patches


@dataclass(frozen=True)
class SlidePlan:
    scale: Scale
    tissue: TissueMasks
    grid: Grid

    @property
    def tiles(self) -> list[Tile]:
        return self.grid.tiles


def working_mpp(slide_mpp: float, options: RunOptions, reference_mpp: float | None) -> float:
    """The working resolution: --mpp, else the reference's, else the slide's level-0 mpp."""
    return options.mpp or reference_mpp or slide_mpp


# a working resolution finer than level 0 invents pixels; the two limits differ because an
# explicit --mpp is the user's own choice (refused just past the slide's own pixels), while a
# reference's resolution applied to a slide whose metadata lies could upsample it 100x
MAX_UPSAMPLE_MPP = 1.1
MAX_UPSAMPLE_REFERENCE = 2.0


def check_upsampling(name: str, scale: Scale, options: RunOptions) -> None:
    """Refuse a working resolution much finer than what the slide's level 0 holds, unless
    `options.allow_upsampling`."""
    factor = scale.factor  # working px per level-0 px
    if options.allow_upsampling:
        return
    if options.mpp is not None and factor > MAX_UPSAMPLE_MPP:
        raise ConfigError(
            f"--mpp {options.mpp:g} is {factor:.1f}x finer than '{name}' holds "
            f"({scale.slide_mpp:g} µm/px at level 0); use --mpp {scale.slide_mpp:g} or "
            "coarser, or --allow-upsampling")
    if options.mpp is None and factor > MAX_UPSAMPLE_REFERENCE:
        raise ConfigError(
            f"'{name}' says {scale.slide_mpp:g} µm/px, so matching the reference "
            f"({scale.working_mpp:g} µm/px) would upsample it {factor:.1f}x; if its pixel size "
            "is wrong pass --slide-mpp, else --mpp or --allow-upsampling")


def check_extent(name: str, size_wh: tuple[int, int], scale: Scale, wcfg: WsiConfig) -> None:
    """A slide of `size_wh` level-0 px must give a plannable grid at the working resolution:
    no side under MIN_SLIDE_PX, no more than MAX_GRID_TILES tiles (a typo in an mpp would
    otherwise plan 10^19 tiles and hang)."""
    working_wh = scale.working_size(*size_wh)
    if min(working_wh) < MIN_SLIDE_PX:
        raise SlideReadError(
            f"slide '{name}' is {size_wh[0]} x {size_wh[1]} px ({working_wh[0]} x "
            f"{working_wh[1]} at {scale.working_mpp:g} µm/px), smaller than {MIN_SLIDE_PX} px "
            "on a side: not a slide to segment; check the file or --mpp")
    stride = wcfg.tile_px - wcfg.overlap_px
    n_grid = -(-working_wh[0] // stride) * -(-working_wh[1] // stride)
    if n_grid > MAX_GRID_TILES:
        raise ConfigError(
            f"'{name}' at {scale.working_mpp:g} µm/px would be {working_wh[0]} x "
            f"{working_wh[1]} px ({n_grid} tiles, slide {scale.slide_mpp:g} µm/px); check "
            "--mpp, --slide-mpp and --reference-mpp")


def check_slide(path: Path, wcfg: WsiConfig, options: RunOptions,
                reference_mpp: float | None) -> None:
    """Open a slide, check its pixel size and the grid it would give (before models load)."""
    with Slide(Path(path), options.slide_mpp) as slide:
        slide_mpp = slide.require_mpp()
        scale = Scale(slide_mpp, working_mpp(slide_mpp, options, reference_mpp))
        check_upsampling(slide.path.name, scale, options)
        check_extent(slide.path.name, slide.dimensions, scale, wcfg)


def plan_slide(slide: Slide, wcfg: WsiConfig, working: float) -> SlidePlan:
    """Tissue on a thumbnail and the tile grid over it at `working` µm/px."""
    slide_mpp = slide.require_mpp()
    scale = Scale(slide_mpp, working)
    check_extent(slide.path.name, slide.dimensions, scale, wcfg)
    working_wh = scale.working_size(*slide.dimensions)
    thumb, downsample = slide.thumbnail(wcfg.thumbnail_px)
    tissue = tissue_masks(thumb, Scale(slide_mpp, slide_mpp * downsample), wcfg)
    grid = make_grid(working_wh, wcfg.tile_px, wcfg.overlap_px, tissue.tissue,
                     wcfg.min_tissue_fraction)
    return SlidePlan(scale, tissue, grid)


def plan_batches(tiles: list[Tile], batch_tiles: int) -> list[tuple[Tile, ...]]:
    """The tiles in batches (one task and one shard each); see tiling/batches.py."""
    return [tuple(tiles[s]) for s in batch_slices(len(tiles), batch_tiles)]
