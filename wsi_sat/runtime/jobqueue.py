"""Batch-system clusters through dask-jobqueue (SLURM, PBS, LSF), from a `--cluster` file.

The file holds one section named after the batch system (`slurm:`, `pbs:` or `lsf:`) whose keys
go to dask-jobqueue's SLURMCluster / PBSCluster / LSFCluster as they are. Keys left out come
from the site's dask-jobqueue configuration (`~/.config/dask/jobqueue.yaml`, the section
`jobqueue.<config_name>`, `config_name` defaulting to the system's name), exactly as
dask-jobqueue itself reads them: wsi-sat overrides nothing the user or the site set. It adds:

* `--nthreads <lanes>` to the worker command (the worker runs `runtime.lanes` batches at once
  on the cores its job books; dask-jobqueue's own `--nthreads cores/processes` comes first and
  the last one counts) and `OMP_NUM_THREADS` = cores / processes in the job script;
* the glibc shared-arena tunable when `runtime.keep_freed_memory` is on (see allocator.py);
* `--lifetime` and `--lifetime-stagger`: a worker retires before its job's walltime (by default
  10 % of the walltime early, staggered over 5 % of it, at most 5 minutes), so its running
  batches move to other workers instead of being killed with the job;
* adaptive scaling: `adapt: {minimum, maximum}` jobs, or `jobs: N` (= adapt between N and N),
  so a job that ended (walltime, preemption, a node failure) is replaced by a new one.

Top-level keys: the section, `jobs` or `adapt`, `lifetime` and `lifetime_stagger` (a duration
such as "3h50m" or "55m"; `lifetime: null` turns the retirement off)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wsi_sat.errors import ConfigError
from wsi_sat.runtime.allocator import SHARED_ARENA_TUNABLE
from wsi_sat.runtime.lanes import resolve_lanes

SYSTEMS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster"}
TOP_LEVEL = {"jobs", "adapt", "lifetime", "lifetime_stagger"}
EXAMPLE = "see examples/slurm.yaml"


@dataclass(frozen=True)
class ClusterSpec:
    system: str  # slurm | pbs | lsf
    options: dict[str, Any]  # the section: dask-jobqueue keyword arguments the user set
    minimum_jobs: int
    maximum_jobs: int
    lifetime: str | None  # "auto" (from the walltime), a duration, or None (off)
    lifetime_stagger: str | None


def load_cluster_spec(path: Path) -> ClusterSpec:
    """Read and check a `--cluster` file (plain YAML: tags are refused)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"cluster file '{path}' not found; {EXAMPLE}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"cluster file '{path}' is not plain YAML{line}: "
                          f"{getattr(exc, 'problem', None) or exc}; {EXAMPLE}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"cluster file '{path}' must be a mapping; {EXAMPLE}")
    systems = [k for k in raw if k in SYSTEMS]
    if len(systems) != 1:
        raise ConfigError(f"cluster file '{path}' needs exactly one of the sections "
                          f"{', '.join(s + ':' for s in SYSTEMS)} (found "
                          f"{len(systems)}); {EXAMPLE}")
    unknown = sorted(set(raw) - TOP_LEVEL - set(SYSTEMS))
    if unknown:
        raise ConfigError(f"cluster file '{path}': unknown key '{unknown[0]}' (known: the "
                          f"section, {', '.join(sorted(TOP_LEVEL))}); {EXAMPLE}")
    system = systems[0]
    options = raw[system] or {}
    if not isinstance(options, dict):
        raise ConfigError(f"cluster file '{path}': '{system}:' must hold dask-jobqueue "
                          f"{SYSTEMS[system]} settings; {EXAMPLE}")
    if "jobs" in raw and "adapt" in raw:
        raise ConfigError(f"cluster file '{path}': give 'jobs' or 'adapt', not both")
    try:
        if "adapt" in raw:
            adapt = raw["adapt"] or {}
            minimum, maximum = int(adapt.get("minimum", 0)), int(adapt["maximum"])
        else:
            minimum = maximum = int(raw.get("jobs", 1))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ConfigError(f"cluster file '{path}': 'adapt' needs integers 'minimum' and "
                          "'maximum' (jobs), 'jobs' an integer") from None
    if not 0 <= minimum <= maximum or maximum < 1:
        raise ConfigError(f"cluster file '{path}': jobs must satisfy 0 <= minimum <= maximum "
                          f"and maximum >= 1 (got {minimum}, {maximum})")
    lifetime = raw.get("lifetime", "auto")
    stagger = raw.get("lifetime_stagger")
    for name, value in (("lifetime", lifetime), ("lifetime_stagger", stagger)):
        if value not in (None, "auto") and parse_duration_s(str(value)) is None:
            raise ConfigError(f"cluster file '{path}': {name} '{value}' is not a duration "
                              "(e.g. 3h50m, 55m, 90s)")
    return ClusterSpec(system, dict(options), minimum, maximum,
                       None if lifetime is None else str(lifetime),
                       None if stagger is None else str(stagger))


def parse_duration_s(text: str) -> float | None:
    """"3h50m", "55m", "90s", "1d2h" (dask's own format) → seconds; None if not one."""
    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)d)?\s*(?:(\d+(?:\.\d+)?)h)?\s*"
                         r"(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*", text)
    if not parts or not any(parts.groups()):
        return None
    d, h, m, s = (float(g) if g else 0.0 for g in parts.groups())
    return ((d * 24 + h) * 60 + m) * 60 + s


def walltime_s(system: str, walltime: str | None) -> float | None:
    """A batch system's walltime string in seconds (None when unset or unreadable).
    SLURM: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S; PBS: H:M:S (or seconds); LSF: [H:]M."""
    if not walltime:
        return None
    text = str(walltime).strip()
    days = 0.0
    if "-" in text:
        d, text = text.split("-", 1)
        days = float(d) if d.isdigit() else float("nan")
    try:
        nums = [float(x) for x in text.split(":")]
    except ValueError:
        return None
    if days != days or not nums or len(nums) > 3:  # nan days
        return None
    if system == "slurm":
        if days:
            h, m, s = (nums + [0.0, 0.0])[:3]
        else:
            h, m, s = ([0.0, nums[0], 0.0] if len(nums) == 1 else
                       [0.0, *nums] if len(nums) == 2 else nums)
    elif system == "lsf":
        h, m, s = ([0.0, nums[0], 0.0] if len(nums) == 1 else [nums[0], nums[1], 0.0])
    else:  # pbs
        h, m, s = ([0.0, 0.0, nums[0]] if len(nums) == 1 else
                   [0.0, *nums] if len(nums) == 2 else nums)
    return ((days * 24 + h) * 60 + m) * 60 + s


def _setting(spec: ClusterSpec, key: str) -> Any:
    """A job setting as dask-jobqueue resolves it: the file's section, else the site's
    `jobqueue.<config_name>` configuration."""
    import dask

    if spec.options.get(key) is not None:
        return spec.options[key]
    name = spec.options.get("config_name") or spec.system
    return dask.config.get(f"jobqueue.{name}.{key}", None)


def lifetime_args(spec: ClusterSpec) -> list[str]:
    """`--lifetime` / `--lifetime-stagger` for the worker command: a worker retires before
    its job's walltime ("auto": 10 % early, at least 2 minutes; staggered by 5 % of the
    walltime, at most 5 minutes)."""
    if spec.lifetime is None:
        return []
    stagger = spec.lifetime_stagger
    if spec.lifetime == "auto":
        wall = walltime_s(spec.system, _setting(spec, "walltime"))
        if wall is None or wall < 10 * 60:
            return []  # no walltime known, or too short to retire from
        life = wall - max(0.1 * wall, 120.0)
        lifetime = f"{int(life)}s"
        if stagger is None:
            stagger = f"{int(min(0.05 * wall, 300.0))}s"
    else:
        lifetime = spec.lifetime
    args = ["--lifetime", lifetime]
    if stagger:
        args += ["--lifetime-stagger", stagger]
    return args


def jobqueue_cluster(spec: ClusterSpec, shared_arena: bool = True, lanes: int = 0) -> Any:
    """The dask-jobqueue cluster of `spec` (not yet scaled: see `start_jobs`). Each worker
    process runs `lanes` task threads (0 = auto, see `resolve_lanes`) on its share of the job's
    cores, which it gets in OMP_NUM_THREADS."""
    import dask_jobqueue

    cores = _setting(spec, "cores")
    processes = _setting(spec, "processes")
    if cores is None:
        raise ConfigError(f"the cluster's cores per job are set neither in the '{spec.system}:'"
                          f" section nor in the site's jobqueue.{spec.system} configuration; "
                          f"add 'cores:' ({EXAMPLE})")
    processes = int(processes or 1)
    share = max(1, int(cores) // processes)
    kwargs = dict(spec.options)
    extra = list(_setting(spec, "worker_extra_args") or [])
    extra += ["--nthreads", str(resolve_lanes(lanes, share)), *lifetime_args(spec)]
    kwargs["worker_extra_args"] = extra
    prologue = list(_setting(spec, "job_script_prologue") or [])
    prologue.append(f"export OMP_NUM_THREADS={share}")
    if shared_arena:
        prologue.append('export GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}'
                        f'{SHARED_ARENA_TUNABLE}"')
    kwargs["job_script_prologue"] = prologue
    kwargs.setdefault("scheduler_options", {"dashboard_address": None})
    try:
        return getattr(dask_jobqueue, SYSTEMS[spec.system])(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the '{spec.system}:' section: {exc} (every key goes to "
                          f"dask_jobqueue.{SYSTEMS[spec.system]}; {EXAMPLE})") from None


def start_jobs(cluster: Any, spec: ClusterSpec) -> None:
    """Adaptive scaling between the spec's minimum and maximum jobs: an ended job is
    replaced."""
    cluster.adapt(minimum_jobs=spec.minimum_jobs, maximum_jobs=spec.maximum_jobs)
