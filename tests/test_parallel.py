"""TaskPool: in-process and on a dask LocalCluster, with a bounded number of tasks in flight."""

from __future__ import annotations

import math
import operator
import os

import pytest

from cellstore.parallel import WORKER_PRE_SPAWN_ENV, default_workers, task_pool


def _counted(n: int, pulled: list[int]):
    for i in range(n):
        pulled[0] += 1
        yield (i, 10)


def test_inline_pool_runs_tasks_in_order_one_at_a_time():
    pulled, results, in_flight = [0], [], []

    def on_done(value):
        results.append(value)
        in_flight.append(pulled[0] - len(results))

    with task_pool("inline") as pool:
        pool.run(operator.add, _counted(5, pulled), on_done)
    assert results == [10, 11, 12, 13, 14]
    assert max(in_flight) == 0


def test_local_cluster_runs_every_task_with_a_bounded_window():
    pulled, results, in_flight = [0], [], []

    def on_done(value):
        results.append(value)
        in_flight.append(pulled[0] - len(results))

    driver_env = {key: os.environ.get(key) for key in WORKER_PRE_SPAWN_ENV}
    with task_pool("", workers=2) as pool:
        assert pool.n_workers == 2
        pool.run(operator.add, _counted(40, pulled), on_done, max_in_flight=3)
        # Workers keep freed memory (see WORKER_PRE_SPAWN_ENV) and use one thread each.
        seen = pool.client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
        assert set(seen.values()) == {WORKER_PRE_SPAWN_ENV["MALLOC_TRIM_THRESHOLD_"]}
        assert set(pool.client.run(os.environ.get, "OMP_NUM_THREADS").values()) == {"1"}
        # Worker-side errors come back to the driver as the original exception.
        with pytest.raises(ValueError, match="math domain error"):
            pool.run(math.sqrt, iter([(4.0,), (-1.0,)]), lambda value: None)
    assert sorted(results) == list(range(10, 50))
    assert max(in_flight) <= 3  # never more than the window submitted ahead of results
    # ... but the driver gets its own environment back: what it loads later (torch) keeps
    # every core
    assert {key: os.environ.get(key) for key in WORKER_PRE_SPAWN_ENV} == driver_env


def test_empty_task_list_does_nothing():
    with task_pool("inline") as pool:
        pool.run(operator.add, iter(()), lambda value: pytest.fail("no task expected"))


def test_default_workers_counts_usable_cores():
    assert default_workers() >= 1


def test_no_cluster_is_started_when_there_is_nothing_to_do():
    with task_pool("", workers=2) as pool:
        pool.run(operator.add, iter(()), lambda value: pytest.fail("no task expected"))
        assert pool._client is None


def test_connects_to_an_existing_scheduler_by_address():
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cluster:
        results = []
        with task_pool(cluster.scheduler_address) as pool:
            pool.run(operator.mul, iter([(2, 3), (4, 5)]), results.append)
            assert pool.client.scheduler.address == cluster.scheduler_address
        assert sorted(results) == [6, 20]
        assert cluster.scheduler.workers  # the cluster outlives the pool
