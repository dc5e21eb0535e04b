"""`report.html`: the cohort at a glance, written with summary.csv. One static page (no server,
no network: it opens from a folder copied back from the cluster) with a plot of each slide's
density of the target, then every slide's overview, figures and warnings, linked to its
outputs. The page names its images relative to itself, so the folder can move."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

from wsi_sat.writers.atomic import write_atomic

_CSS = """
body{font-family:system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px}p.sub{color:#555;margin:0 0 20px}
.slides{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:18px}
.card{border:1px solid #ccc;border-radius:6px;padding:10px;background:#fafafa}
.card h2{font-size:16px;margin:0 0 6px;word-break:break-all}
.card img{width:100%;height:auto;border:1px solid #ddd;background:#fff}
table.fig{border-collapse:collapse;font-size:13px;margin-top:6px}
table.fig td{padding:1px 8px 1px 0}table.fig td:first-child{color:#555}
.warn{background:#fff4d6;border-left:4px solid #e0a000;padding:4px 8px;font-size:13px;
margin:6px 0}.status-unfinished{color:#b00}.missing{color:#b00;font-style:italic}
a{color:#1a5fb4}svg text{font-size:12px;font-family:inherit}
"""

# an image that cannot be loaded says so (a file not copied back), instead of a broken icon;
# the page records how many overviews loaded (body data-overviews="loaded/total")
_SCRIPT = """
function missing(img){var p=document.createElement('p');p.className='missing';
p.textContent='overview not found: '+img.getAttribute('src');img.replaceWith(p);}
window.addEventListener('load',function(){var imgs=document.querySelectorAll('img.overview');
var ok=0;imgs.forEach(function(i){if(i.complete&&i.naturalWidth>0){ok++;}});
var all=document.querySelectorAll('.card').length;
document.body.dataset.overviews=ok+'/'+all;});
"""


def _density(rows: list[dict[str, Any]]) -> tuple[str, str, list[float]]:
    """What the plot shows: objects per mm² of tissue where any slide counted objects, else
    the target's percent of the tissue."""
    if any(r.get("object_type") == "detection" for r in rows):
        return "objects per mm² of tissue", "{:.0f}", [
            float(r.get("objects_per_mm2_tissue") or 0.0) for r in rows]
    return "target, % of the tissue", "{:.3g} %", [
        100 * float(r.get("target_fraction_of_tissue") or 0.0) for r in rows]


def density_svg(rows: list[dict[str, Any]]) -> str:
    """A horizontal bar per slide (inline SVG: no script, no library)."""
    title, fmt, values = _density(rows)
    top = max([v for v in values if math.isfinite(v)] + [1e-9])
    label_w, bar_w, row_h = 220, 420, 20
    height = row_h * len(rows) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 90}" '
             f'height="{height}" role="img" aria-label="{html.escape(title)}">',
             f'<text x="0" y="14" font-weight="bold">{html.escape(title)}</text>']
    for i, (row, value) in enumerate(zip(rows, values, strict=True)):
        y = 24 + i * row_h
        width = bar_w * value / top if math.isfinite(value) else 0
        name = html.escape(str(row["slide"]))
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{name}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 2}" width="{width:.1f}" height="{row_h - 6}" '
                     'fill="#3a7bd5"/>')
        parts.append(f'<text x="{label_w + width + 4:.1f}" y="{y + 13}">'
                     f'{html.escape(fmt.format(value))}</text>')
    return "\n".join(parts + ["</svg>"])


def _figures(row: dict[str, Any]) -> str:
    cells = [("status", row.get("status", "")), ("objects", row.get("objects", 0)),
             ("target", f"{float(row.get('target_mm2') or 0):.3f} mm²"),
             ("of the tissue", f"{100 * float(row.get('target_fraction_of_tissue') or 0):.1f} %"),
             ("tissue", f"{float(row.get('tissue_mm2') or 0):.2f} mm²"),
             ("objects per mm²", f"{float(row.get('objects_per_mm2_tissue') or 0):.0f}"),
             ("mean score", f"{float(row.get('mean_score') or 0):.2f}"),
             ("run", f"{row.get('run_key', '')} · {float(row.get('seconds') or 0):.0f} s")]
    return "".join(f"<tr><td>{k}</td><td>{html.escape(str(v))}</td></tr>" for k, v in cells)


def _card(row: dict[str, Any]) -> str:
    stem = str(row["slide"])
    link = quote(stem)
    status = str(row.get("status", ""))
    warnings = [w for w in str(row.get("warnings") or "").split(" | ") if w.strip()]
    links = " · ".join(f'<a href="{link}{suffix}">{label}</a>' for suffix, label in (
        (".geojson", "GeoJSON"), (".objects.csv", "objects"), (".run.json", "run.json")))
    image = (f'<img class="overview" src="{link}.overview.png" alt="overview of '
             f'{html.escape(stem)}" loading="lazy" onerror="missing(this)">'
             if status.startswith(("done", "skipped")) else
             f'<p class="status-unfinished">{html.escape(status)}: no outputs yet</p>')
    notes = "".join(f'<div class="warn">{html.escape(w)}</div>' for w in warnings)
    return (f'<div class="card"><h2>{html.escape(stem)}</h2>{image}{notes}'
            f'<table class="fig">{_figures(row)}</table><p>{links}</p></div>')


def report_html(rows: list[dict[str, Any]], title: str) -> str:
    done = sum(str(r.get("status", "")).startswith(("done", "skipped")) for r in rows)
    warned = sum(bool(str(r.get("warnings") or "").strip()) for r in rows)
    cards = "\n".join(_card(r) for r in rows)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{_CSS}</style><script>{_SCRIPT}</script></head>
<body><h1>{html.escape(title)}</h1>
<p class="sub">{len(rows)} slides, {done} finished, {warned} with warnings; figures as in
summary.csv. Open a slide's GeoJSON in QuPath over the slide.</p>
{density_svg(rows) if rows else ""}
<div class="slides">
{cards}
</div></body></html>
"""


def write_report(path: Path, rows: list[dict[str, Any]]) -> None:
    title = f"wsi-sat: {Path(path).resolve().parent.name}"
    write_atomic(Path(path), lambda p: p.write_text(report_html(rows, title), encoding="utf-8"))
