"""One resumable stage runner for every stage (ingest, stats, and what comes after them).

The contract is datatrove's: a stage is a fixed, deterministic list of tasks; a task does its work and
its completion marker is written *last*, so a marker's presence means the task's outputs are whole;
a rerun skips tasks whose marker is there, and the stage's results are read back from the markers
alone, so a resumed run finishes exactly as an uninterrupted one.

Two executors run the pending tasks: ``LocalExecutor`` in this process (tests, small inputs, debugging)
and ``RayExecutor`` (one Ray task per stage task, spread over the cluster: each streams its own work to
storage and returns only its small marker, so memory stays flat however large a task's output). Both write
the same bytes. Plain Ray tasks, not a Ray Data read: on a 2-core machine Ray Data's streaming executor ran
one task at a time for most of a run (1 → 2 workers gave 1.25x); tasks give 2x. A ``PooledStage`` (a model
per worker) runs on Ray Data as an actor pool instead: the model is loaded once per actor, never per task.
"""
from __future__ import annotations

import abc
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from vlaflow.schemas import InputError, VlaflowError

from .storage import Output

ProgressFn = Callable[[int, int], None]  # (episodes, steps) done since the last call
EXECUTORS = ("auto", "ray", "local")
# ``auto`` runs in this process below this much input: Ray's start-up (~5 s) would cost more than it saves, and
# the bytes written are the same either way. With RAY_ADDRESS set, ``auto`` always means that cluster.
AUTO_LOCAL_BYTES = 64 << 20


@dataclass(frozen=True)
class Task:
    id: int  # position in the stage: what orders results and names markers
    marker: str  # relative path of the completion marker


class Stage(abc.ABC):
    """A stage is plain, picklable data: Ray ships it to workers and calls ``run_task`` there."""

    name: str  # for messages
    output_uri: str  # the root its markers live under

    @abc.abstractmethod
    def tasks(self) -> list[Task]:
        """Every task of the stage in a deterministic order (done or not)."""

    @abc.abstractmethod
    def run_task(self, task: Task, progress: ProgressFn) -> dict:
        """Do the task's work (writing its outputs whole) and return its marker, which the runner writes last."""

    def is_done(self, out: Output, task: Task) -> bool:
        """A marker is there; stages whose outputs can vanish independently check them too."""
        return out.exists(task.marker)


class PooledStage(Stage):
    """A stage whose tasks share an expensive per-worker state (a model): ``load_worker`` runs once per worker
    (a Ray actor of a pool, or once in this process), then ``run_pooled`` runs whole tasks with it."""

    pool_size: int | None = None  # actors; None: every CPU but one (at least 1), or one per GPU group
    num_cpus_per_worker: float = 1
    num_gpus_per_worker: float = 0

    @abc.abstractmethod
    def load_worker(self):
        """The per-worker state (e.g. a loaded encoder)."""

    @abc.abstractmethod
    def run_pooled(self, worker, task: Task, progress: ProgressFn) -> dict:
        """``run_task`` with the worker's state; returns the marker."""

    def run_task(self, task: Task, progress: ProgressFn) -> dict:
        return self.run_pooled(self.load_worker(), task, progress)


def execute(stage: Stage, task: Task, progress: ProgressFn, worker=None) -> dict:
    marker = stage.run_pooled(worker, task, progress) if worker is not None else stage.run_task(task, progress)
    Output(stage.output_uri).write_json(task.marker, marker)  # last: its presence means the task is done
    return marker


def pending(stage: Stage) -> list[Task]:
    out = Output(stage.output_uri)
    return [t for t in stage.tasks() if not stage.is_done(out, t)]


def results(stage: Stage) -> list[dict]:
    """Every task's marker in task order; a task without one is a stage that has not finished."""
    out = Output(stage.output_uri)
    found = []
    for t in stage.tasks():
        if not stage.is_done(out, t):
            raise RuntimeError(f"{stage.name} task {t.id} ({t.marker}) did not complete; re-run to resume")
        found.append(out.read_json(t.marker))
    return found


class LocalExecutor:
    """Tasks one after another in this process: no Ray, the same outputs byte for byte."""

    where = "this process (no Ray)"

    def start(self) -> str:
        return self.where

    def run(self, stage: Stage, tasks: list[Task], on_progress=None) -> None:
        counts = [0, 0]

        def progress(episodes: int, steps: int) -> None:
            counts[0] += episodes
            counts[1] += steps

        worker = stage.load_worker() if isinstance(stage, PooledStage) else None  # once, not per task
        for i, t in enumerate(tasks):
            execute(stage, t, progress, worker)
            if on_progress:
                on_progress(counts[0], counts[1], i + 1, len(tasks))


class RayExecutor:
    """One Ray task per stage task (``num_cpus=1``, SPREAD over the nodes; Ray retries a task whose worker or node
    dies), at most two per CPU in flight; a pooled stage runs as a Ray Data actor pool. Counts reach the driver
    through a named actor."""

    def __init__(self, num_cpus: int | None = None):
        self.num_cpus = num_cpus
        self.where = ""

    def start(self) -> str:
        from .ray_compat import init_ray

        self.where = self.where or init_ray(self.num_cpus)
        return self.where

    def run(self, stage: Stage, tasks: list[Task], on_progress=None) -> None:
        import ray

        self.start()
        actor_name = f"vlaflow-progress-{uuid.uuid4().hex[:8]}"
        actor = _progress_actor(actor_name) if on_progress else None

        def tick(done: int) -> None:
            if actor is not None:
                try:
                    e, s = ray.get(actor.get.remote(), timeout=5)
                    on_progress(e, s, done, len(tasks))
                except Exception:  # progress is best-effort; the run's result is what counts
                    pass

        try:
            if isinstance(stage, PooledStage):
                _run_pool(stage, tasks, actor_name if actor else None, tick)
            else:
                _run_tasks(stage, tasks, actor_name if actor else None, tick)
        except Exception as err:
            raise _user_error(err) or err
        if actor is not None:
            on_progress(*ray.get(actor.get.remote()), len(tasks), len(tasks))
            ray.kill(actor)


def _remote_execute(stage: Stage, task: Task, actor_name: str | None) -> int:
    progress = _ActorProgress(actor_name)
    execute(stage, task, progress)
    progress(0, 0, force=True)
    return task.id


def _run_tasks(stage: Stage, tasks: list[Task], actor_name: str | None, tick) -> None:
    """Submit in task order with a bounded window, so a huge stage never floods the scheduler; the stage is put
    in the object store once, not pickled into every task."""
    import ray

    run = ray.remote(num_cpus=1, scheduling_strategy="SPREAD")(_remote_execute)
    stage_ref = ray.put(stage)
    window = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    todo, running, done = list(tasks), [], 0
    try:
        while todo or running:
            while todo and len(running) < window:
                running.append(run.remote(stage_ref, todo.pop(0), actor_name))
            ready, running = ray.wait(running, num_returns=1, timeout=0.25)
            for ref in ready:
                ray.get(ref)  # a task's error surfaces here
                done += 1
            tick(done)
    except BaseException:
        for ref in running:
            ray.cancel(ref, force=True)
        raise


def _run_pool(stage: PooledStage, tasks: list[Task], actor_name: str | None, tick) -> None:
    """The actor pool's rows, drained on a thread while the driver reports progress."""
    from .ray_compat import configure_data_context

    configure_data_context()
    ds = _actor_pool(stage, tasks, actor_name)
    done: list[dict] = []
    error: list[BaseException] = []

    def consume():
        try:
            done.extend(ds.iter_rows())
        except BaseException as err:  # surfaced on the driver thread below
            error.append(err)

    th = threading.Thread(target=consume, daemon=True)
    th.start()
    while th.is_alive():
        th.join(0.25)
        tick(len(done))
    if error:
        raise error[0]


def _user_error(err: BaseException) -> VlaflowError | None:
    """A VlaflowError raised in a Ray task reaches the driver re-raised by Ray with the remote traceback in its
    message: give the user the one-line error itself (same class, original message)."""
    found, seen = None, set()
    while err is not None and id(err) not in seen:
        if isinstance(err, VlaflowError):
            found = err
        seen.add(id(err))
        err = getattr(err, "cause", None) or err.__cause__
    raw = BaseException.__str__(found) if found is not None else ""  # the message as Ray built it, lines intact
    if found is None or "\n" not in raw:
        return found
    cls = next(c for c in type(found).__mro__ if issubclass(c, VlaflowError) and c.__module__.startswith("vlaflow"))
    prefix = f"{cls.__module__}.{cls.__qualname__}: "
    lines = [line[len(prefix):] for line in raw.splitlines() if line.startswith(prefix)]
    return cls(lines[-1] if lines else raw.splitlines()[0])  # our errors are one line by contract


def make_executor(kind: str, num_cpus: int | None = None, work_bytes: int | None = None):
    """``work_bytes``: how much input the stage reads, for ``auto``'s choice (None: unknown, so Ray)."""
    if kind == "auto":
        small = work_bytes is not None and work_bytes < AUTO_LOCAL_BYTES
        kind = "local" if small and not os.environ.get("RAY_ADDRESS") else "ray"
    if kind == "ray":
        return RayExecutor(num_cpus)
    if kind == "local":
        return LocalExecutor()
    raise InputError(f"--executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")


def run_stage(stage: Stage, executor, on_progress=None) -> list[dict]:
    """Run what is pending and return every task's marker (``on_progress(episodes, steps, done, total)``)."""
    todo = pending(stage)
    if todo:
        executor.run(stage, todo, on_progress)
    return results(stage)


def _progress_actor(name: str):
    import ray

    @ray.remote(num_cpus=0)
    class Progress:
        def __init__(self):
            self.episodes = self.steps = 0

        def add(self, episodes, steps):
            self.episodes += episodes
            self.steps += steps

        def get(self):
            return self.episodes, self.steps

    return Progress.options(name=name).remote()


class _ActorProgress:
    """A task's counts, batched to the driver's progress actor twice a second at most."""

    def __init__(self, actor_name: str | None):
        self.actor = None
        self.pending = [0, 0]
        self.last = time.monotonic()
        if actor_name:
            import ray

            try:
                self.actor = ray.get_actor(actor_name)
            except ValueError:
                self.actor = None

    def __call__(self, episodes: int, steps: int, force: bool = False) -> None:
        self.pending[0] += episodes
        self.pending[1] += steps
        if self.actor is not None and (force or time.monotonic() - self.last > 0.5):
            self.actor.add.remote(*self.pending)
            self.pending = [0, 0]
            self.last = time.monotonic()


def pool_size(stage: PooledStage, resources: dict) -> int:
    """Actors in the pool: one per GPU group when GPUs are asked for; on CPU never every CPU (a read or the
    driver's tasks would starve, ray#44687): at most CPUs - 1, at least 1; and never more than the tasks."""
    if stage.pool_size:
        return max(1, stage.pool_size)
    if stage.num_gpus_per_worker:
        return max(1, int(resources.get("GPU", 0) // stage.num_gpus_per_worker))
    cpus = int(resources.get("CPU", 1))
    return max(1, int((cpus - 1) // max(stage.num_cpus_per_worker, 1)))


def _actor_pool(stage: PooledStage, tasks: list[Task], actor_name: str | None):
    """``from_items(tasks).map_batches(TaskActor, ActorPoolStrategy)``: the worker state is loaded once per actor
    in ``__init__``, each row is one whole task, and only its small result row leaves the actor."""
    import numpy as np
    import ray

    resources = ray.cluster_resources()
    if stage.num_gpus_per_worker > resources.get("GPU", 0):
        raise InputError(f"{stage.name}: {stage.num_gpus_per_worker:g} GPU(s) per worker asked, the Ray cluster has "
                         f"{resources.get('GPU', 0):g}")
    size = min(pool_size(stage, resources), len(tasks))
    by_id = {t.id: t for t in tasks}

    class TaskActor:
        def __init__(self):
            self.worker = stage.load_worker()

        def __call__(self, batch: dict) -> dict:
            done = []
            for tid in batch["task"]:
                progress = _ActorProgress(actor_name)
                execute(stage, by_id[int(tid)], progress, self.worker)
                progress(0, 0, force=True)
                done.append(int(tid))
            return {"task": np.asarray(done, np.int64)}

    ds = ray.data.from_items([{"task": t.id} for t in tasks], override_num_blocks=len(tasks))
    return ds.map_batches(TaskActor, compute=ray.data.ActorPoolStrategy(size=size), batch_size=1,
                          num_cpus=stage.num_cpus_per_worker, num_gpus=stage.num_gpus_per_worker or None)
