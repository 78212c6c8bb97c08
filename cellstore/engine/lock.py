"""The build lock: one writer (a build or gc) at a time per warehouse; readers are never blocked."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cellstore.errors import CellstoreError

LOCK_FILE = ".build.lock"
POLL_S = 0.2

# errno values that mean "this folder cannot be written" (read-only mount, no permission).
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def read_only_error(root: Path, action: str = "build") -> CellstoreError:
    """The one line for a warehouse whose folder cannot be written."""
    return CellstoreError(
        f"warehouse {root} is read-only: `cellstore {action}` needs to write there "
        "(reading with sql, ls, history, check, verify and export still works)"
    )


def _open_lock_file(root: Path, action: str):
    if not root.parent.is_dir():
        raise CellstoreError(f"cannot create warehouse {root}: its parent folder does not exist")
    try:
        root.mkdir(exist_ok=True)
        # "a", not "w": opening never truncates what the holder wrote (its pid).
        return open(root / LOCK_FILE, "a+")
    except OSError as exc:
        if exc.errno in _READ_ONLY:
            raise read_only_error(root, action) from None
        raise CellstoreError(f"cannot open the build lock of {root}: {exc.strerror}") from None


def holder(root: Path) -> str:
    """Who holds the lock, as the holder wrote it ("pid 123, build"), or "" if unknown."""
    try:
        return (root / LOCK_FILE).read_text().strip()
    except OSError:
        return ""


@contextmanager
def build_lock(
    root: Path,
    wait: float = 0,
    *,
    action: str = "build",
    on_wait: Callable[[str], None] | None = None,
    catalog: str = "sqlite",
) -> Iterator[None]:
    """Hold the warehouse's write lock, waiting up to `wait` seconds for another holder.

    Builds and gc both take it: gc must never delete a file that a running build's open
    transaction may still commit. `on_wait` is told once (with the holder) when we wait.
    A Postgres catalog (`catalog="postgres:<dsn>"`) is shared by machines that do not share
    `root`: its lock is an advisory lock in the catalog database instead of a file (taken at
    once or refused; `wait` does not apply).
    """
    if catalog.startswith("postgres:"):
        from cellstore.engine.catalog_lock import postgres_build_lock
        from cellstore.engine.warehouse import Warehouse

        warehouse = Warehouse(root, catalog)
        with postgres_build_lock(warehouse.postgres_dsn, warehouse.label):
            yield
        return
    handle = _open_lock_file(root, action)
    try:
        deadline = time.monotonic() + max(0.0, wait)
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                who = holder(root)
                if time.monotonic() >= deadline:
                    by = f" ({who})" if who else ""
                    waited = f" after waiting {wait:g} s" if wait > 0 else ""
                    hint = " (or pass --wait SECONDS)" if action == "gc" else ""
                    raise CellstoreError(
                        f"another build is running on {root}{by}{waited}; "
                        f"wait for it to finish{hint}"
                    ) from None
                if not told and on_wait is not None:
                    on_wait(who)
                    told = True
                time.sleep(POLL_S)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}, {action}\n")
            handle.flush()
        except OSError:
            pass  # the note is informative only; holding the lock is what matters
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()
