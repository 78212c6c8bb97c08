"""Image stages on a real dask cluster: `dask scheduler` + 2 `dask worker` CLI processes.

Also: a worker killed with SIGKILL during `cell_features`, and scheduler addresses that do
not answer (nothing listening fails at once, a silent listener within 30 s, both naming the
address).
"""

from __future__ import annotations

import operator
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import REPO
from dask_cluster_support import DaskCluster

from cellstore.engine.warehouse import Warehouse
from cellstore.errors import CellstoreError
from cellstore.parallel import task_pool
from cellstore.synth import generate

PLATES = ["Week1_22123", "Week2_24121"]
IMAGE_TABLES = {
    "illumination": ["plate", "channel"],
    "nuclei": ["cell_id"],
    "nuclei_rejected": ["image_id"],
    "crops": ["cell_id"],
    "crops_rejected": ["image_id"],
    "cell_features": ["cell_id"],
    "cell_features_rejected": ["image_id"],
}
IMAGE_STAGES = ["+cell_features", "+crops"]


def cellstore(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cellstore", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def build(source, warehouse, scheduler: str, *extra: str) -> subprocess.CompletedProcess:
    selection = [arg for stage in IMAGE_STAGES for arg in ("--select", stage)]
    return cellstore(
        "build", *selection, *extra,
        "--source", str(source), "--warehouse", str(warehouse), "--scheduler", scheduler,
    )  # fmt: skip


def table_frame(warehouse, table: str, keys: list[str]) -> pd.DataFrame:
    """The table sorted by its key, list columns as tuples (comparable cell by cell)."""
    con = Warehouse(warehouse).connect(read_only=True)
    try:
        frame = con.execute(f"select * from {table}").fetchdf()
    finally:
        con.close()
    for column in frame.columns:
        if (
            frame[column]
            .map(lambda v: hasattr(v, "__len__") and not isinstance(v, str | bytes))
            .any()
        ):
            frame[column] = frame[column].map(lambda v: tuple(v) if v is not None else None)
    return frame.sort_values(keys).reset_index(drop=True)


def assert_same_tables(a, b) -> None:
    for table, keys in IMAGE_TABLES.items():
        left, right = table_frame(a, table, keys), table_frame(b, table, keys)
        assert len(left) == len(right), table
        pd.testing.assert_frame_equal(left, right, check_exact=True, obj=table)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dask_source") / "source"
    generate(folder, plates=PLATES, sites=1, scale=0.5, seed=0, wells="annotated")
    return folder


@pytest.fixture(scope="module")
def inline_warehouse(source, tmp_path_factory):
    warehouse = tmp_path_factory.mktemp("inline") / "warehouse"
    result = build(source, warehouse, "inline")
    assert result.returncode == 0, result.stdout + result.stderr
    return warehouse


@pytest.fixture
def cluster(tmp_path):
    """Scheduler + 2 workers, separate processes; every one of them is stopped afterwards."""
    cluster = DaskCluster(n_workers=2, log_dir=tmp_path / "dask-logs")
    try:
        yield cluster.start()
    finally:
        cluster.close()


def test_cluster_build_equals_inline_build(source, inline_warehouse, cluster, tmp_path):
    warehouse = tmp_path / "warehouse"
    result = build(source, warehouse, cluster.address)
    assert result.returncode == 0, result.stdout + result.stderr + cluster.logs()
    assert_same_tables(inline_warehouse, warehouse)
    # Both worker processes did image tasks (the scheduler saw work on each).
    with cluster.client() as client:
        executed = client.run(lambda dask_worker: dask_worker.state.transition_counter)
    assert len(executed) == 2 and all(n > 0 for n in executed.values()), executed


def _processing_features(client) -> str | None:
    """Address of a worker now running a cell_features task, if any."""
    for worker, keys in client.processing().items():
        if any("features_task" in str(key) for key in keys):
            return worker
    return None


def test_worker_killed_during_cell_features(source, inline_warehouse, cluster, tmp_path):
    """SIGKILL one worker mid-`cell_features`: its tasks are resubmitted to the other worker
    and the build finishes with the same tables as an inline build; a later build too."""
    warehouse = tmp_path / "warehouse"
    shutil.copytree(inline_warehouse, warehouse)
    rebuild = ["build", "--select", "cell_features", "--full-refresh", "--source", str(source)]
    rebuild += ["--warehouse", str(warehouse), "--scheduler", cluster.address]
    args = [sys.executable, "-m", "cellstore", *rebuild]
    before = len(
        Warehouse(warehouse).connect(read_only=True).execute("select * from snapshots()").fetchall()
    )
    proc = subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    killed = None
    try:
        with cluster.client() as client:
            deadline = time.monotonic() + 240
            while killed is None and time.monotonic() < deadline and proc.poll() is None:
                address = _processing_features(client)
                if address is not None:
                    pid = client.run(os.getpid, workers=[address])[address]
                    os.kill(pid, signal.SIGKILL)
                    killed = pid
                time.sleep(0.05)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert killed is not None, "no cell_features task was seen running"
    assert any(w.pid == killed for w in cluster.workers)
    assert [w.poll() for w in cluster.workers if w.pid == killed] == [-signal.SIGKILL]
    # Documented behaviour: the scheduler resubmits the lost tasks; the build finishes.
    assert proc.returncode == 0, stdout + stderr + cluster.logs()
    con = Warehouse(warehouse).connect(read_only=True)
    try:
        after = len(con.execute("select * from snapshots()").fetchall())
    finally:
        con.close()
    assert after == before + 1  # exactly one commit: cell_features
    assert_same_tables(inline_warehouse, warehouse)
    # A second build of the stage on the surviving worker finishes as well.
    again = cellstore(*rebuild)
    assert again.returncode == 0, again.stdout + again.stderr
    assert_same_tables(inline_warehouse, warehouse)


def test_shared_value_lost_with_its_only_worker_is_sent_again(tmp_path):
    """A value shared while one worker was up lives only there; once that worker is killed,
    the tasks that use it run on the worker that joined later, with the value sent again."""
    import numpy as np

    cluster = DaskCluster(n_workers=1, log_dir=tmp_path / "dask-logs").start()
    try:
        with task_pool(cluster.address) as pool:
            shared = pool.share(np.arange(100) * 3)  # on w0 only: w1 is not there yet
            late = cluster.add_worker("w1")
            cluster.wait_for_workers(2, timeout=90)
            first = cluster.workers[0]
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
            deadline = time.monotonic() + 60
            while shared.status == "finished":  # until the client hears its only copy is gone
                assert time.monotonic() < deadline, cluster.logs()
                time.sleep(0.1)
            results: list[int] = []
            pool.run(operator.getitem, ((shared, i) for i in range(6)), results.append)
            assert sorted(results) == [0, 3, 6, 9, 12, 15]
            assert late.poll() is None  # the late worker did the work and is still up
            # The value sent again lives on w1 only: lose it too, and it is sent once more.
            cluster.add_worker("w2")
            cluster.wait_for_workers(2, timeout=90)
            late.send_signal(signal.SIGKILL)
            late.wait(timeout=30)
            with cluster.client() as client:
                while len(client.scheduler_info(n_workers=-1)["workers"]) > 1:
                    assert time.monotonic() < deadline + 60, cluster.logs()
                    time.sleep(0.1)
            again: list[int] = []
            pool.run(operator.getitem, ((shared, i) for i in range(6)), again.append)
            assert sorted(again) == [0, 3, 6, 9, 12, 15]
    finally:
        cluster.close()


# ---- scheduler addresses that do not answer ------------------------------------------------


def _pool_error(address: str) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(CellstoreError) as caught:
        with task_pool(address) as pool:
            pool.client  # noqa: B018 (connecting is the point)
    return str(caught.value), time.monotonic() - started


def test_closed_port_fails_at_once_naming_the_address():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once closed
    message, seconds = _pool_error(address)
    assert address in message and "connection refused" in message and seconds < 30


def test_silent_listener_fails_within_30_s_naming_the_address():
    """Something accepts connections but never speaks dask: dask's Client alone would hang."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
        message, seconds = _pool_error(address)
    assert address in message and "did not answer" in message and seconds < 30


def test_build_with_unreachable_scheduler_is_one_line(source, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    result = build(source, tmp_path / "warehouse", address)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and address in errors[0], result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "connection refused" in errors[0] and "dask scheduler" in errors[0]
    # Nothing of the image stages was published.
    con = Warehouse(tmp_path / "warehouse").connect(read_only=True)
    try:
        tables = {r[0] for r in con.execute("select table_name from duckdb_tables()").fetchall()}
    finally:
        con.close()
    assert "illumination" not in tables and "nuclei" not in tables
