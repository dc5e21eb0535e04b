"""What each Dask worker this package starts runs when it starts (restarted workers too)."""

from __future__ import annotations

from typing import Any

from distributed import WorkerPlugin

from wsi_sat.runtime.threads import set_cpu_share


class CpuShare(WorkerPlugin):
    """Records the cores a local cluster gives each worker (runtime/threads.py `cpu_share`)."""

    def __init__(self, cores: int) -> None:
        self.cores = cores

    def setup(self, worker: Any) -> None:
        set_cpu_share(self.cores)
