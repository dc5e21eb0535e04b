import os
import sys
from pathlib import Path

import pytest

from wsi_sat.errors import ConfigError
from wsi_sat.runtime.jobqueue import jobqueue_cluster, load_cluster_spec

ROOT = Path(__file__).resolve().parents[2]


def test_example_slurm_yaml_renders_a_job_script():
    spec = load_cluster_spec(ROOT / "examples" / "slurm.yaml")
    cluster = jobqueue_cluster(spec)
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
    for text, words in (("jobs: 2\n", "exactly one of the sections"),
                        ("slurm: {}\npbs: {}\n", "exactly one"),
                        ("slurm: {}\nworkers: 3\n", "unknown key 'workers'"),
                        ("slurm: {}\njobs: 2\nadapt: {maximum: 3}\n", "not both"),
                        ("slurm: {}\nadapt: {minimum: 4, maximum: 2}\n", "minimum <= maximum"),
                        ("slurm: {}\nadapt: {minimum: 1}\n", "'maximum'"),
                        ("slurm: {}\nlifetime: soon\n", "not a duration"),
                        ("slurm: !!python/object/apply:os.system [x]\n", "not plain YAML"),
                        ("slurm: [1, 2]\n", "must hold")):
        f.write_text(text)
        with pytest.raises(ConfigError, match=words):
            load_cluster_spec(f)


def test_keep_freed_memory_sets_glibc_malloc(monkeypatch):
    """glibc accepts the settings (Linux CI); elsewhere it is a no-op that says so."""
    import sys

    from wsi_sat.runtime.allocator import keep_freed_memory

    if sys.platform.startswith("linux"):
        import platform

        if platform.libc_ver()[0] == "glibc":
            assert keep_freed_memory() is True
    monkeypatch.setattr(sys, "platform", "darwin")
    assert keep_freed_memory() is False


def test_segmenter_applies_keep_freed_memory_only_when_on(monkeypatch):
    from wsi_sat import segmenter as segment
    from wsi_sat.config import load_config

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


def test_worker_environ_appends_the_shared_arena_tunable_once():
    from wsi_sat.runtime.allocator import SHARED_ARENA_TUNABLE, worker_environ

    assert worker_environ({}) == {"GLIBC_TUNABLES": SHARED_ARENA_TUNABLE}
    assert worker_environ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}) == {
        "GLIBC_TUNABLES": f"glibc.malloc.hugetlb=1:{SHARED_ARENA_TUNABLE}"}
    assert worker_environ({"GLIBC_TUNABLES": f"a=1:{SHARED_ARENA_TUNABLE}"}) == {}


def test_slurm_job_script_exports_the_shared_arena_only_when_on():
    from wsi_sat.runtime.allocator import SHARED_ARENA_TUNABLE

    spec = load_cluster_spec(ROOT / "examples" / "slurm.yaml")
    for on in (True, False):
        cluster = jobqueue_cluster(spec, shared_arena=on)
        try:
            script = cluster.job_script()
        finally:
            cluster.close()
        assert (SHARED_ARENA_TUNABLE in script) is on
        assert "source .venv/bin/activate" in script  # the user's prologue is kept


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc arenas: Linux")
def test_local_worker_threads_share_the_main_arena(monkeypatch):
    """A local Dask worker process starts with the tunable in its environment (glibc reads it
    only at start), so the thread that runs its tasks allocates from the main arena. (Dask's
    nanny copies its pre-spawn environment into this process's too: restored afterwards.)"""
    from wsi_sat.config import load_config
    from wsi_sat.runtime.allocator import SHARED_ARENA_TUNABLE
    from wsi_sat.runtime.cluster import dask_client

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    for on in (False, True):
        cfg = load_config(None, ["wsi.workers=1", f"runtime.keep_freed_memory={str(on).lower()}"])
        with dask_client(cfg) as client:
            env = client.submit(os.environ.get, "GLIBC_TUNABLES", "", pure=False).result()
        assert (SHARED_ARENA_TUNABLE in env.split(":")) is on


def test_lanes_and_their_threads():
    from wsi_sat.config import load_config
    from wsi_sat.runtime.lanes import lane_threads, resolve_lanes

    assert resolve_lanes(0, 1) == 1 and resolve_lanes(0, 2) == 2 and resolve_lanes(0, 16) == 2
    assert resolve_lanes(3, 1) == 3  # asked for: kept
    cfg = load_config(None, [])
    assert lane_threads(cfg.runtime, 2, cores=16) == 8 and lane_threads(cfg.runtime, 3, cores=2) == 1
    assert lane_threads(load_config(None, ["runtime.threads=6"]).runtime, 2, cores=16) == 3


def test_run_in_lanes_runs_side_by_side_and_stops_on_errors():
    import threading
    import time

    from wsi_sat.runtime.lanes import run_in_lanes

    barrier = threading.Barrier(2, timeout=10)  # breaks unless two items run at once

    def meet(i: int) -> tuple[int, str]:
        barrier.wait()
        return i, threading.current_thread().name

    got = list(run_in_lanes(meet, range(4), 2))
    assert sorted(i for i, _ in got) == [0, 1, 2, 3]
    assert len({name for _, name in got}) == 2
    one = list(run_in_lanes(lambda i: threading.current_thread().name, range(3), 1))
    assert set(one) == {threading.current_thread().name}  # one lane: the calling thread

    started = []

    def fail_first(i: int) -> int:
        started.append(i)
        if i == 0:
            raise ValueError("bad tile")
        time.sleep(0.05)
        return i

    with pytest.raises(ValueError, match="bad tile"):
        list(run_in_lanes(fail_first, range(50), 2))
    assert len(started) < 50  # what had not started was cancelled


def test_run_in_lanes_tells_running_items_to_stop():
    import threading
    import time

    from wsi_sat.runtime.lanes import run_in_lanes

    cancel = threading.Event()
    running = threading.Event()
    waited = []

    def item(i: int) -> int:
        if i == 0:
            running.wait(10)
            raise ValueError("bad tile")
        running.set()
        t = time.perf_counter()
        cancel.wait(10)  # a batch checking between tiles
        waited.append(time.perf_counter() - t)
        return i

    t = time.perf_counter()
    with pytest.raises(ValueError, match="bad tile"):
        list(run_in_lanes(item, range(2), 2, cancel))
    assert cancel.is_set() and waited and waited[0] < 5 and time.perf_counter() - t < 5

    # the caller stopping early (Ctrl-C between results) sets it too; a full run does not
    def slow_after_first(i: int) -> int:
        if i:
            time.sleep(0.3)
        return i

    cancel = threading.Event()
    results = run_in_lanes(slow_after_first, range(6), 2, cancel)
    assert next(results) == 0
    results.close()
    assert cancel.is_set()
    cancel = threading.Event()
    assert sorted(run_in_lanes(lambda i: i, range(6), 2, cancel)) == list(range(6))
    assert not cancel.is_set()


def test_slurm_jobs_run_lanes_task_threads_on_the_cores_they_book():
    spec = load_cluster_spec(ROOT / "examples" / "slurm.yaml")  # cores: 8, processes: 1
    for lanes, nthreads in ((0, 2), (4, 4)):
        cluster = jobqueue_cluster(spec, lanes=lanes)
        try:
            script = cluster.job_script()
        finally:
            cluster.close()
        assert "--cpus-per-task=8" in script  # what the job books is unchanged
        assert f"--nthreads {nthreads}" in script
        assert "export OMP_NUM_THREADS=8" in script


def _script(tmp_path, text: str, lanes: int = 0) -> str:
    f = tmp_path / "cluster.yaml"
    f.write_text(text)
    cluster = jobqueue_cluster(load_cluster_spec(f), lanes=lanes)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


@pytest.mark.parametrize("system, header, booked", [
    ("slurm", "#SBATCH", "--cpus-per-task=12"),
    ("pbs", "#PBS", "ncpus=12"),
    ("lsf", "#BSUB", "#BSUB -n 12"),
])
def test_every_batch_system_renders_lanes_lifetime_and_its_own_booking(tmp_path, system,
                                                                      header, booked):
    walltime = {"slurm": "02:00:00", "pbs": "02:00:00", "lsf": "02:00"}[system]
    script = _script(tmp_path, f"""
{system}:
  cores: 12
  processes: 2
  memory: 16GB
  walltime: "{walltime}"
adapt: {{minimum: 0, maximum: 8}}
""", lanes=3)
    assert header in script and booked in script  # the job books what the user asked
    assert script.rstrip().endswith("--lifetime 6480s --lifetime-stagger 300s") or \
        "--lifetime 6480s --lifetime-stagger 300s" in script  # 2 h - 12 min, 5 min stagger
    command = script[script.index("distributed.cli.dask_worker"):]
    assert command.split("--nthreads")[-1].split()[0] == "3"  # the last --nthreads counts
    assert "export OMP_NUM_THREADS=6" in script  # 12 cores / 2 processes


def test_the_sites_jobqueue_config_is_respected(tmp_path):
    """~/.config/dask/jobqueue.yaml: keys the file leaves out come from the site (here 16
    cores, 2 processes, its account), under `config_name` when given."""
    import dask
    import dask_jobqueue  # noqa: F401 - loads its default configuration

    site = {"jobqueue.slurm.cores": 16, "jobqueue.slurm.processes": 2,
            "jobqueue.slurm.memory": "64GB", "jobqueue.slurm.account": "pathlab",
            "jobqueue.slurm.walltime": "00:30:00",
            "jobqueue.bigmem": {**dask.config.get("jobqueue.slurm"), "cores": 32,
                                "memory": "512GB", "queue": "bigmem"}}
    with dask.config.set(site):
        script = _script(tmp_path, "slurm:\n  queue: gpu\njobs: 2\n")
        assert "--cpus-per-task=16" in script and "#SBATCH -A pathlab" in script
        assert "#SBATCH -p gpu" in script  # what the file sets wins
        assert "export OMP_NUM_THREADS=8" in script and "--nworkers 2" in script
        assert "--lifetime 1620s --lifetime-stagger 90s" in script  # 30 min walltime
        named = _script(tmp_path, "slurm:\n  config_name: bigmem\nlifetime: null\n")
        assert "--cpus-per-task=32" in named and "#SBATCH -p bigmem" in named
        assert "--lifetime" not in named


def test_walltimes_and_durations_are_read_per_system():
    from wsi_sat.runtime.jobqueue import parse_duration_s, walltime_s

    assert walltime_s("slurm", "04:00:00") == 4 * 3600
    assert walltime_s("slurm", "1-02:00") == 26 * 3600
    assert walltime_s("slurm", "90") == 90 * 60
    assert walltime_s("slurm", "30:00") == 30 * 60
    assert walltime_s("lsf", "2:30") == 2.5 * 3600
    assert walltime_s("pbs", "01:00:00") == 3600
    assert walltime_s("slurm", "x") is None and walltime_s("slurm", None) is None
    assert parse_duration_s("3h50m") == 230 * 60 and parse_duration_s("soon") is None


def test_cluster_jobs_adapt_between_minimum_and_maximum(tmp_path, monkeypatch):
    """`jobs: N` and `adapt:` both scale adaptively, so an ended job is replaced."""
    from wsi_sat.runtime.jobqueue import start_jobs

    calls = []
    fake = type("Cluster", (), {"adapt": lambda self, **kw: calls.append(kw)})()
    for text, expect in (("slurm: {cores: 4}\njobs: 3\n", (3, 3)),
                         ("slurm: {cores: 4}\nadapt: {minimum: 1, maximum: 20}\n", (1, 20)),
                         ("slurm: {cores: 4}\n", (1, 1))):
        f = tmp_path / "c.yaml"
        f.write_text(text)
        start_jobs(fake, load_cluster_spec(f))
        assert calls[-1] == {"minimum_jobs": expect[0], "maximum_jobs": expect[1]}


def test_blas_is_held_at_one_thread_whichever_threads_come_and_go():
    """Lanes enter and leave the BLAS limit in any order, from any thread; threadpoolctl lets
    one thread at a time control OpenBLAS, so a limit set by one lane and restored by another
    stuck at the wrong count (a whole slide's lanes ran numpy's BLAS on every core, its idle
    workers spinning). Inside: one thread; after the last one leaves: as before."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import numpy  # noqa: F401  (its OpenBLAS)
    from threadpoolctl import ThreadpoolController

    from wsi_sat.runtime.threads import BlasLimiter

    blas = ThreadpoolController().select(user_api="blas")
    before = [lib["num_threads"] for lib in blas.info()]
    if not before or max(before) == 1:
        pytest.skip("BLAS runs one thread here already: nothing to hold")
    limiter = BlasLimiter()
    inside: list[list[int]] = []
    entered = [threading.Event() for _ in range(2)]
    leave = [threading.Event() for _ in range(2)]

    def lane(i: int) -> None:
        with limiter.one_thread():
            entered[i].set()
            inside.append([lib["num_threads"] for lib in blas.info()])
            leave[i].wait(10)

    with ThreadPoolExecutor(2) as pool:
        for _ in range(3):  # rounds: the first lane in leaves first, the other restores
            done = [pool.submit(lane, i) for i in range(2)]
            for e in entered:
                assert e.wait(10)
            leave[0].set()
            done[0].result()
            inside.append([lib["num_threads"] for lib in blas.info()])  # one lane still in
            leave[1].set()
            done[1].result()
            assert [lib["num_threads"] for lib in blas.info()] == before
            for e in (*entered, *leave):
                e.clear()
        with limiter.one_thread():  # this (main) thread too
            inside.append([lib["num_threads"] for lib in blas.info()])
    assert inside and all(set(n) == {1} for n in inside)
    assert [lib["num_threads"] for lib in blas.info()] == before


def test_blas_limiters_of_several_runs_hold_one_limit():
    """Each run's segmenter has its own limiter: one used and left (its thread alive, as a cached
    segmenter's is) must not keep control of OpenBLAS from the next (CI: every later limiter's
    limit was ignored); two in at once hold one limit until the last leaves."""
    import numpy  # noqa: F401  (its OpenBLAS)
    from threadpoolctl import ThreadpoolController

    from wsi_sat.runtime.threads import BlasLimiter

    blas = ThreadpoolController().select(user_api="blas")
    before = [lib["num_threads"] for lib in blas.info()]
    if not before or max(before) == 1:
        pytest.skip("BLAS runs one thread here already: nothing to hold")

    def now() -> list[int]:
        return [lib["num_threads"] for lib in blas.info()]

    first, second = BlasLimiter(), BlasLimiter()
    with first.one_thread():
        assert set(now()) == {1}
    assert now() == before
    with second.one_thread():  # the later run
        assert set(now()) == {1}
        with first.one_thread():
            assert set(now()) == {1}
        assert set(now()) == {1}  # the first left, the second still in
    assert now() == before
    with blas.limit(limits=1):  # and other code may limit BLAS from its own thread afterwards
        assert set(now()) == {1}
    assert now() == before
