"""The batches of a slide on Dask workers, surviving the loss of workers.

A worker that dies (a node lost, the OOM killer, a SIGKILL) takes with it the batches it was
running and its copy of the reference. Dask's nanny restarts local workers and the scheduler
reschedules their tasks, but data only the dead held is gone and its dependents are cancelled,
and a worker lost without a closed connection is only noticed after its time-to-live. So the
batches are submitted in rounds: a round's batches whose worker died are resubmitted in the
next with the reference sent again, up to `runtime.worker_losses` rounds; and when no batch
finishes for `runtime.stall_timeout_s` while workers are connected, the run stops with a line
saying how to resume (finished batches keep their shards). A batch's own error (a corrupt
tile) is raised as it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from wsi_sat.config import RuntimeConfig
from wsi_sat.errors import RunStateError
from wsi_sat.pipeline.batch import BatchTask, segment_batch

log = logging.getLogger(__name__)

_POLL_S = 0.2  # how often a round looks for finished batches


def _lost(future: Any) -> bool:
    """Whether a future failed because a worker or its data was lost (not by its own error)."""
    from distributed import KilledWorker
    from distributed.comm import CommClosedError

    if future.status == "cancelled":  # its data (the reference) died with every holder
        return True
    if future.status == "error":
        return isinstance(future.exception(), (KilledWorker, CommClosedError))
    return False


def _workers(client: Any) -> int:
    try:
        return len(client.scheduler_info().get("workers", {}))
    except Exception:  # noqa: BLE001 - a scheduler that does not answer has no workers to us
        return 0


def _round(client: Any, tasks: list[BatchTask], reference: Any, tissue: Any,
           on_done: Callable[[BatchTask], None], stall_s: float) -> list[BatchTask]:
    """Submit `tasks` once; returns those lost with a worker."""
    try:
        ref_future = client.scatter(reference, broadcast=True, hash=False)
        tissue_future = client.scatter(tissue, broadcast=True, hash=False)
    except OSError as exc:  # CommClosedError: a worker died while the reference went to it
        log.warning("sending the reference to the Dask workers failed (%s)", exc)
        return list(tasks)
    futures = {client.submit(segment_batch, task, reference=ref_future, tissue=tissue_future,
                             pure=False): task for task in tasks}
    pending, lost, quiet_s = set(futures), [], 0.0
    while pending:
        time.sleep(_POLL_S)
        # "lost": a result that died with its worker, which the scheduler recomputes
        done = {f for f in pending if f.status in ("finished", "error", "cancelled")}
        pending -= done
        quiet_s = 0.0 if done else quiet_s + (_POLL_S if _workers(client) else 0.0)
        for future in done:
            if future.status == "finished":
                # its shard is on disk; its result may already be gone with its worker
                on_done(futures[future])
            elif _lost(future):
                lost.append(futures[future])
            else:
                future.result()  # the batch's own error, raised as it is
        if quiet_s > stall_s:
            client.cancel(list(pending))
            raise RunStateError(
                f"no batch finished in {stall_s:.0f}s with workers connected (a lost worker "
                "or a hung file system); rerun the same command with --resume "
                "(runtime.stall_timeout_s sets this wait)")
    order = {id(task): i for i, task in enumerate(tasks)}  # resubmitted in the slide's order
    return sorted(lost, key=lambda task: order[id(task)])


def run_on_dask(client: Any, tasks: list[BatchTask], reference: Any, tissue: Any,
                on_done: Callable[[BatchTask], None], runtime: RuntimeConfig) -> None:
    """Every batch of `tasks` on the client's workers; `on_done(task)` for each finished."""
    remaining = list(tasks)
    for losses in range(runtime.worker_losses + 1):
        remaining = _round(client, remaining, reference, tissue, on_done,
                           runtime.stall_timeout_s)
        if not remaining:
            return
        log.warning("%d batches were lost with their Dask worker; resubmitting them (%d of %d "
                    "resubmissions)", len(remaining), losses + 1, runtime.worker_losses)
    raise RunStateError(
        f"Dask workers died {runtime.worker_losses + 1} times with batches of this slide (out of "
        "memory? a failing node?); rerun the same command with --resume to finish it "
        "(runtime.worker_losses sets how often batches are resubmitted)")
