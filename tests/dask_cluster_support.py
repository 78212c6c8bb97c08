"""A real dask cluster of separate CLI processes on 127.0.0.1: `dask scheduler` + `dask worker`s.

Workers run without a nanny, so a worker killed with SIGKILL stays dead (a nanny would
restart it) and its tasks must move to the others. Every process started here is stopped
by `close()`: terminate, then SIGKILL after a bounded wait.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cellstore.parallel import WORKER_PRE_SPAWN_ENV

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dask_cli(*args: str) -> list[str]:
    """`dask ...` from this interpreter's environment."""
    return [str(Path(sys.executable).parent / "dask"), *args]


class DaskCluster:
    """`dask scheduler` and `n_workers` single-threaded `dask worker` processes."""

    def __init__(self, n_workers: int = 2, log_dir: Path | None = None):
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="cellstore-dask-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._logs: list = []
        self.n_workers = n_workers
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        # Workers import cellstore from this checkout and keep one thread per library.
        self.env = {
            **os.environ,
            **WORKER_PRE_SPAWN_ENV,
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
            ),
        }

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115 (closed in close())
        self._logs.append(log)
        return subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.log_dir
        )

    def start(self, timeout: float = 90) -> DaskCluster:
        self.scheduler = self._start(
            "scheduler",
            _dask_cli(
                "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"
            ),
        )
        for i in range(self.n_workers):
            self.add_worker(f"w{i}")
        self.wait_for_workers(self.n_workers, timeout)
        return self

    def add_worker(self, name: str) -> subprocess.Popen:
        worker = self._start(
            name,
            _dask_cli(
                "worker", self.address,
                "--name", name,
                "--nthreads", "1",
                "--no-nanny",
                "--no-dashboard",
                "--host", "127.0.0.1",
                "--local-directory", str(self.log_dir / name),
                "--memory-limit", "0",
            ),
        )  # fmt: skip
        self.workers.append(worker)
        return worker

    def client(self):
        from dask.distributed import Client

        return Client(self.address, timeout=30, set_as_default=False)

    def wait_for_workers(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.scheduler is not None and self.scheduler.poll() is not None:
                raise RuntimeError(f"dask scheduler exited: {self.logs()}")
            try:
                with self.client() as client:
                    if len(client.scheduler_info(n_workers=-1)["workers"]) >= n:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{n} dask workers did not join {self.address} in {timeout} s")

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.log_dir.glob("*.log"))
        )

    def close(self) -> None:
        processes = [*self.workers, *([self.scheduler] if self.scheduler else [])]
        for proc in processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        # A worker still busy with a task can take 15 s or more to leave gracefully: give
        # them all 5 s together, then kill what is left (the test is over either way).
        deadline = time.monotonic() + 5
        for proc in processes:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        self.workers, self.scheduler = [], None
        for log in self._logs:
            log.close()
