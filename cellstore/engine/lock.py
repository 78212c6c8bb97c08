"""The build lock: one build at a time per warehouse (readers are never blocked)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cellstore.errors import CellstoreError

LOCK_FILE = ".build.lock"


@contextmanager
def build_lock(root: Path, catalog: str = "sqlite") -> Iterator[None]:
    """Hold the warehouse's build lock, or fail at once naming the warehouse.

    A Postgres catalog (`catalog="postgres:<dsn>"`) is shared by machines that do not share
    `root`: its lock is an advisory lock in the catalog database instead of a file.
    """
    if catalog.startswith("postgres:"):
        from cellstore.engine.catalog_lock import postgres_build_lock
        from cellstore.engine.warehouse import Warehouse

        warehouse = Warehouse(root, catalog)
        with postgres_build_lock(warehouse.postgres_dsn, warehouse.label):
            yield
        return
    if not root.parent.is_dir():
        raise CellstoreError(f"cannot create warehouse {root}: its parent folder does not exist")
    root.mkdir(exist_ok=True)
    with open(root / LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CellstoreError(
                f"another build is running on {root}; wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
