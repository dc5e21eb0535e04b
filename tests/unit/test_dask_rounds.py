"""The Dask batch rounds (pipeline/distributed.py) with a scripted client: batches lost with a
worker are resubmitted, a batch's own error is raised as it is, a run with no progress ends in
bounded time, and a run that keeps losing workers stops with a line saying how to resume."""

from __future__ import annotations

import pytest

import wsi_sat.pipeline.distributed as rounds
from wsi_sat.config import RuntimeConfig
from wsi_sat.errors import RunStateError, SlideReadError


class Future:
    def __init__(self, status: str, exc: BaseException | None = None) -> None:
        self.status, self._exc = status, exc

    def exception(self) -> BaseException | None:
        return self._exc

    def result(self):  # noqa: ANN201
        if self._exc is not None:
            raise self._exc
        return {}


class Client:
    """Each submission of a task gets the next outcome scripted for it (the last repeats)."""

    def __init__(self, outcomes: dict[int, list[Future]], workers: int = 1) -> None:
        self.outcomes, self.workers, self.submitted, self.scattered = outcomes, workers, [], 0

    def scatter(self, data, broadcast, hash):  # noqa: ANN001, A002
        self.scattered += 1
        return object()

    def submit(self, fn, task, **kw):  # noqa: ANN001
        self.submitted.append(task)
        script = self.outcomes[task]
        return script.pop(0) if len(script) > 1 else script[0]

    def scheduler_info(self) -> dict:
        return {"workers": {str(i): {} for i in range(self.workers)}}

    def cancel(self, futures) -> None:  # noqa: ANN001
        pass


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(rounds.time, "sleep", lambda s: None)


def _run(client: Client, tasks: list[int], **cfg) -> list[int]:
    done: list[int] = []
    rounds.run_on_dask(client, tasks, "reference", "tissue", done.append,
                       RuntimeConfig(**cfg))
    return done


def test_batches_lost_with_their_worker_are_resubmitted_with_the_reference_again():
    from distributed import KilledWorker

    client = Client({0: [Future("finished")],
                     1: [Future("cancelled"), Future("finished")],
                     2: [Future("error", KilledWorker("t", "w", 3)), Future("finished")]})
    assert sorted(_run(client, [0, 1, 2])) == [0, 1, 2]
    assert client.submitted == [0, 1, 2, 1, 2] and client.scattered == 4  # two per round


def test_a_batchs_own_error_is_raised_as_it_is():
    client = Client({0: [Future("error", SlideReadError("tile 5 is corrupt"))]})
    with pytest.raises(SlideReadError, match="corrupt"):
        _run(client, [0])


def test_workers_that_keep_dying_stop_the_run_saying_how_to_resume():
    client = Client({0: [Future("cancelled")]})
    with pytest.raises(RunStateError, match="--resume"):
        _run(client, [0], worker_losses=2)
    assert client.submitted == [0, 0, 0]


def test_no_progress_with_workers_connected_ends_in_bounded_time():
    client = Client({0: [Future("pending")]})
    with pytest.raises(RunStateError, match="no batch finished in 10s"):
        _run(client, [0], stall_timeout_s=10)


def test_time_without_any_worker_does_not_count(monkeypatch):
    """SLURM jobs still queued: no worker, no clock; once one connects, the wait counts."""
    calls = [0]

    class Queued(Client):
        def scheduler_info(self) -> dict:
            calls[0] += 1
            return {"workers": {} if calls[0] < 500 else {"w": {}}}

    client = Queued({0: [Future("pending")]})
    with pytest.raises(RunStateError):
        _run(client, [0], stall_timeout_s=10)
    assert calls[0] >= 500 + 10 / rounds._POLL_S - 1
