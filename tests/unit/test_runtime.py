from pathlib import Path

import pytest

from wsi_sat.errors import ConfigError
from wsi_sat.runtime import load_cluster_spec, slurm_cluster

ROOT = Path(__file__).resolve().parents[2]


def test_example_slurm_yaml_renders_a_job_script():
    spec = load_cluster_spec(ROOT / "examples" / "slurm.yaml")
    cluster = slurm_cluster(spec)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -p gpu" in script
    assert "#SBATCH --gres=gpu:1" in script
    assert "--mem=" in script or "#SBATCH --mem" in script
    assert "#SBATCH -t 04:00:00" in script
    assert "source .venv/bin/activate" in script
    assert "distributed.cli.dask_worker" in script or "dask-worker" in script or "dask worker" in script


def test_bad_cluster_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_cluster_spec(tmp_path / "none.yaml")
    f = tmp_path / "c.yaml"
    f.write_text("jobs: 2\n")
    with pytest.raises(ConfigError, match="slurm:"):
        load_cluster_spec(f)


def test_keep_freed_memory_sets_glibc_malloc(monkeypatch):
    """glibc accepts the settings (Linux CI); elsewhere it is a no-op that says so."""
    import sys

    from wsi_sat.allocator import keep_freed_memory

    if sys.platform.startswith("linux"):
        import platform

        if platform.libc_ver()[0] == "glibc":
            assert keep_freed_memory() is True
    monkeypatch.setattr(sys, "platform", "darwin")
    assert keep_freed_memory() is False


def test_segmenter_applies_keep_freed_memory_only_when_on(monkeypatch):
    from wsi_sat.config import load_config
    from wsi_sat.sat import segment

    calls = []
    monkeypatch.setattr(segment, "keep_freed_memory", lambda: calls.append(1) or True)

    class Stop(Exception):
        pass

    def stop(*_a, **_k):
        raise Stop

    monkeypatch.setattr(segment, "select_device", stop)
    for on, want in ((False, 0), (True, 1)):
        cfg = load_config(None, [f"runtime.keep_freed_memory={str(on).lower()}"])
        with pytest.raises(Stop):
            segment.Segmenter.from_config(cfg)
        assert len(calls) == want
