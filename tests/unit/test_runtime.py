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
