"""Where campaign measurements run: in this process (default) or as Ray tasks on a cluster.

An executor has one method, ``map(fn, shared, tasks)``, yielding ``(task, result)`` pairs as
tasks finish (in any order); ``result`` is ``fn(shared, *task)`` or the exception it raised.

Why rows can be neither lost nor duplicated with Ray: workers only *return* records; they never
write. The driver alone appends each record to the campaign journal (one fsync-ed line, see
``campaign.py``) as its task completes, and submits only (cell, repeat) keys the journal does not
hold yet, each exactly once. A worker that dies loses only its unfinished task (not journaled;
the next run does it again); a driver that dies loses only tasks still in flight. The journal's
flock keeps a second driver out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ecnas_plugin.errors import EcnasError, UnknownName

Task = tuple[Any, ...]

EXECUTORS = ("local", "ray")


class LocalExecutor:
    """Run tasks one after another in this process."""

    name = "local"

    def map(self, fn: Callable[..., Any], shared: Any, tasks: Sequence[Task]) -> Iterator[tuple[Task, Any]]:
        for task in tasks:
            try:
                yield task, fn(shared, *task)
            except Exception as exc:  # reported by the caller with its task; others still run
                yield task, exc


class RayExecutor:
    """Run each task as a Ray task: one GPU per task when the cluster has GPUs, else ``num_cpus``.

    Uses the running Ray instance if ``ray.init`` was called, else connects to ``address``
    (``None``: start a local one, or the cluster named by ``RAY_ADDRESS``). At most
    ``max_in_flight`` tasks are queued at a time (default: twice the slots the cluster has) so
    results stream back to the driver's journal as they finish.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: float = 1, num_gpus: float | None = None,
                 max_in_flight: int | None = None):
        try:
            import ray
        except ImportError:
            raise EcnasError("the Ray executor needs Ray: pip install 'ray[default]'") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        gpus = ray.cluster_resources().get("GPU", 0)
        self.num_gpus = (1 if gpus > 0 else 0) if num_gpus is None else num_gpus
        self.num_cpus = num_cpus
        slots = gpus / self.num_gpus if self.num_gpus else ray.cluster_resources().get("CPU", 1) / num_cpus
        self.max_in_flight = max_in_flight or max(1, int(2 * slots))

    def map(self, fn: Callable[..., Any], shared: Any, tasks: Sequence[Task]) -> Iterator[tuple[Task, Any]]:
        ray = self.ray
        options = {"num_gpus": self.num_gpus} if self.num_gpus else {"num_cpus": self.num_cpus}
        remote = ray.remote(**options)(fn)
        shared_ref = ray.put(shared)
        pending: dict[Any, Task] = {}
        queue = list(tasks)
        try:
            while queue or pending:
                while queue and len(pending) < self.max_in_flight:
                    task = queue.pop(0)
                    pending[remote.remote(shared_ref, *task)] = task
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    task = pending.pop(ref)
                    try:
                        yield task, ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:
                        yield task, exc.as_instanceof_cause()
                    except Exception as exc:  # worker died, object lost: the task simply did not finish
                        yield task, exc
        finally:
            for ref in pending:  # the driver stops (error, kill): drop what is still running
                ray.cancel(ref, force=True)


def get_executor(name: str, **options: Any) -> LocalExecutor | RayExecutor:
    """An executor by name: ``"local"`` or ``"ray"`` (options go to :class:`RayExecutor`)."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(**options)
    raise UnknownName("executor", name, EXECUTORS)
