"""Running image tasks on dask.distributed: a LocalCluster by default, or an existing scheduler."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from cellstore.errors import CellstoreError

# Settings of image stages that change how they run, not what they output (not fingerprinted).
RUNTIME_SETTINGS = ("scheduler", "workers", "batch_size")

INLINE = "inline"

# How long an existing scheduler may take to answer before the build fails naming it.
SCHEDULER_TIMEOUT_S = 10.0
TASK_RETRIES = 3  # resubmissions of a task whose future a lost worker cancelled

# Set in each worker process before it starts (dask's pre-spawn environment):
# - one thread per library: the image code is numpy/scipy, parallel across fields;
# - malloc keeps freed memory: dask's default MALLOC_TRIM_THRESHOLD_=65536 hands every
#   per-field temporary (~5 MB images) back to the OS, and re-faulting those pages doubled
#   the CPU time of the crops path (8,000 page faults per field instead of ~100).
WORKER_PRE_SPAWN_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MALLOC_TRIM_THRESHOLD_": str(256 * 2**20),
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),  # glibc's maximum
}


# The cluster shares the machine with the tasks, and the scheduler and nannies run in the
# driver's process: fewer housekeeping timers (event-loop tick checks every 20 ms, memory
# polls every 100 ms, a sampling profiler every 10 ms in workers) and no work stealing
# (tasks are submitted a few at a time, there is nothing to rebalance).
QUIET_CLUSTER = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.scheduler.work-stealing": False,
}


def default_workers() -> int:
    """Cores this process may use (respects CPU affinity / container limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class TaskPool:
    """Runs batches of tasks on a dask Client, or in this process (scheduler "inline").

    The client (and a LocalCluster, if one is needed) starts on the first `run` that has a
    task, so a stage with nothing to do never pays for starting workers; `close` stops it.
    """

    def __init__(self, scheduler: str = "", workers: int = 0) -> None:
        self.scheduler = scheduler
        self.workers = workers
        self._client: Any = None
        self._cluster: Any = None
        # Shared values by the key of their future, to send again if the future is lost,
        # and the future that replaced a lost one (both forgotten with the old future).
        self._shared_values: dict[str, Any] = {}
        self._replacements: dict[str, Any] = {}

    @property
    def client(self) -> Any:
        """The dask Client (None when inline), started on first use."""
        if self.scheduler == INLINE:
            return None
        if self._client is None:
            self._driver_env = {key: os.environ.get(key) for key in WORKER_PRE_SPAWN_ENV}
            self._client, self._cluster = _connect(self.scheduler, self.workers)
        return self._client

    def _restore_driver_env(self) -> None:
        """Undo the workers' environment in this process once the cluster is gone.

        The LocalCluster's nannies run here and put WORKER_PRE_SPAWN_ENV into os.environ
        before spawning each worker (and again when they restart one), which the worker
        processes read as they start. Left behind, OMP_NUM_THREADS=1 made every library
        loaded later run on one thread: torch in the SimCLR stages embedded at half speed
        after the image stages (measured)."""
        for key, value in getattr(self, "_driver_env", {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    @property
    def n_workers(self) -> int:
        client = self.client
        return 1 if client is None else sum(client.nthreads().values()) or 1

    def share(self, value: Any) -> Any:
        """Send `value` to every worker once; pass the result to many tasks as an argument
        (a dask future, resolved on the worker; the value itself when inline)."""
        client = self.client
        if client is None:
            return value
        import weakref

        future = client.scatter(value, broadcast=True, hash=False)
        key = future.key
        self._shared_values[key] = value
        weakref.finalize(future, self._forget_shared, key)
        return future

    def _forget_shared(self, key: str) -> None:
        self._shared_values.pop(key, None)
        self._replacements.pop(key, None)

    def _with_live_shares(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """`args` with every shared future whose data was lost replaced by a fresh share.

        A broadcast reaches only the workers up at the time: a worker that joins later has
        no copy, and when the workers that had one die the data is lost and the scheduler
        cancels every task that needs it ("lost dependencies"). Resubmitting such a task
        with the same future fails again, so the value is sent again, once per lost future.
        """
        return tuple(self._live_share(arg) for arg in args)

    def _live_share(self, arg: Any) -> Any:
        """`arg`, or the live share that replaced it (a replacement can be lost in turn)."""
        key = getattr(arg, "key", None)
        if key not in self._shared_values:
            return arg
        if key in self._replacements:
            return self._live_share(self._replacements[key])
        if arg.status in ("lost", "cancelled", "error"):
            self._replacements[key] = self.share(self._shared_values[key])
            return self._replacements[key]
        return arg

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None
        self._restore_driver_env()

    def run(
        self,
        func: Callable[..., Any],
        tasks: Iterable[tuple[Any, ...]],
        on_done: Callable[[Any], None],
        max_in_flight: int = 0,
    ) -> None:
        """Call `func(*args)` for each args of `tasks` and `on_done(result)` as each finishes.

        `tasks` is consumed lazily and at most `max_in_flight` tasks (default: 2 per worker
        thread) are submitted at once, so the driver's memory stays bounded however many
        tasks there are. Results arrive in completion order. A task's exception is re-raised.
        """
        pending = iter(tasks)
        first_args = next(pending, None)
        if first_args is None:
            return
        client = self.client
        if client is None:
            on_done(func(*first_args))
            for args in pending:
                on_done(func(*args))
            return
        from dask.distributed import as_completed
        from distributed.client import FutureCancelledError

        window = max_in_flight or 2 * self.n_workers
        args_of: dict[str, tuple[tuple[Any, ...], int]] = {}  # key → (args, retries so far)

        def submit(args: tuple[Any, ...], retries: int = 0) -> Any:
            args = self._with_live_shares(args)
            future = client.submit(func, *args, pure=False)
            args_of[future.key] = (args, retries)
            return future

        first = [submit(first_args)]
        for args in pending:
            first.append(submit(args))
            if len(first) >= window:
                break
        queue = as_completed(first, loop=client.loop)
        del first
        for future in queue:
            args, retries = args_of.pop(future.key)
            try:
                result = future.result()
            except FutureCancelledError:
                # A worker died and the scheduler dropped the task instead of rerunning it
                # (seen under load after a SIGKILL: "cancelled ... already forgotten"), or
                # a value it needs died with the worker ("lost dependencies"): submit it
                # again, with lost shares sent again, a bounded number of times.
                if retries >= TASK_RETRIES:
                    raise
                queue.add(submit(args, retries + 1))
                continue
            future.release()
            on_done(result)
            next_args = next(pending, None)
            if next_args is not None:
                queue.add(submit(next_args))


def probe_scheduler(address: str, timeout: float) -> None:
    """Fail within `timeout` seconds, naming `address`, unless a dask scheduler answers there.

    dask's Client bounds the TCP connect by its timeout but can wait forever for the
    handshake of something that accepts and never replies, so ask for the scheduler's
    identity first under one overall deadline. A refused TCP connection fails at once:
    dask would retry it until the timeout, though nothing listens there.
    """
    import asyncio

    from distributed.comm import connect

    _refuse_closed_port(address, timeout)

    async def identity() -> Any:
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    try:
        reply = asyncio.run(asyncio.wait_for(identity(), timeout))
    except TimeoutError:
        raise CellstoreError(
            f"dask scheduler {address} did not answer within {timeout:g} s"
        ) from None
    except (OSError, ValueError, TypeError) as exc:
        raise CellstoreError(f"cannot connect to dask scheduler {address}: {exc}") from None
    if not isinstance(reply, dict) or reply.get("type") != "Scheduler":
        raise CellstoreError(f"{address} answered, but is not a dask scheduler: {reply!r:.200}")


def _refuse_closed_port(address: str, timeout: float) -> None:
    """Raise CellstoreError at once if the host refuses a TCP connection to `address`'s port
    (nothing listens); other outcomes are left to the dask handshake."""
    import socket

    from distributed.comm import parse_address, parse_host_port

    try:
        protocol, location = parse_address(address)
        if protocol not in ("tcp", "tls"):
            return
        host, port = parse_host_port(location)
    except ValueError:
        return  # dask's own connect reports a malformed address
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except ConnectionRefusedError:
        raise CellstoreError(
            f"cannot connect to dask scheduler {address}: connection refused, nothing listens "
            "there (start one with `dask scheduler`, or build without --scheduler)"
        ) from None
    except OSError:
        return


def _connect(scheduler: str, workers: int) -> tuple[Any, Any]:
    """(client, cluster or None): a new LocalCluster when `scheduler` is empty."""
    import logging

    import dask
    from dask.distributed import Client, LocalCluster

    if scheduler:
        probe_scheduler(scheduler, SCHEDULER_TIMEOUT_S)
        try:
            return Client(scheduler, timeout=SCHEDULER_TIMEOUT_S, set_as_default=False), None
        except (OSError, TimeoutError) as exc:
            raise CellstoreError(f"cannot connect to dask scheduler {scheduler}: {exc}") from None
    settings = {
        f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_PRE_SPAWN_ENV.items()
    }
    settings.update(QUIET_CLUSTER)
    with dask.config.set(settings):
        cluster = LocalCluster(
            n_workers=workers or default_workers(),
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: never collide with another cluster
            silence_logs=logging.ERROR,
        )
    try:
        return Client(cluster, set_as_default=False), cluster
    except Exception:
        cluster.close()
        raise


@contextmanager
def task_pool(scheduler: str = "", workers: int = 0) -> Iterator[TaskPool]:
    """A TaskPool for the duration of the block (closed at the end).

    scheduler: "" starts a dask LocalCluster of `workers` single-threaded worker processes
        (0 = one per core) when the first task arrives; an address (e.g. "tcp://host:8786")
        connects to a running scheduler, whose workers must be able to import cellstore and
        write where the stage asks them to (a shared folder); "inline" runs every task in
        this process, in order (tests, debugging).
    Worker processes are spawned: scripts that build must guard their entry point with
    `if __name__ == "__main__":`.
    """
    pool = TaskPool(scheduler, workers)
    try:
        yield pool
    finally:
        pool.close()
