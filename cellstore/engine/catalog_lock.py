"""The build lock of a Postgres-catalogued warehouse: an advisory lock in the catalog database.

A file lock only serialises builds that share a folder; users on different machines share
the catalog, so the lock lives there. It is a transaction-level advisory lock held by an open
transaction on a connection of its own: Postgres releases it when the build ends, and also
when the building process dies or loses its connection (no stale lock to clean up).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from cellstore.errors import CellstoreError

# One key per catalog database: every cellstore build on that database takes it.
BUILD_LOCK_KEY = zlib.crc32(b"cellstore build lock") & 0x7FFFFFFF  # fits pg_locks.objid
LOCK_DB = "catalog_lock"


def lock_query(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    """Run `sql` in Postgres on the lock connection's current transaction."""
    from cellstore.engine.warehouse import sql_string

    return con.execute(f"select * from postgres_query('{LOCK_DB}', {sql_string(sql)})").fetchall()


@contextmanager
def postgres_build_lock(dsn: str, label: str) -> Iterator[None]:
    """Hold the catalog's build lock, or fail at once naming the catalog (`label`)."""
    from cellstore.engine.warehouse import (
        load_postgres_extension,
        offline_connection,
        postgres_reason,
        sql_string,
    )

    con = offline_connection()
    try:
        load_postgres_extension(con)
        try:
            con.execute(f"attach {sql_string(dsn)} as {LOCK_DB} (type postgres)")
            # postgres_query runs on the connection pinned by the open DuckDB transaction.
            con.execute("begin")
            (got,) = lock_query(con, f"select pg_try_advisory_xact_lock({BUILD_LOCK_KEY})")[0]
        except duckdb.Error as exc:
            raise CellstoreError(f"cannot open {label}: {postgres_reason(exc)}") from None
        if not got:
            raise CellstoreError(f"another build is running on {label}; wait for it to finish")
        try:
            yield
        finally:
            con.execute("rollback")  # ends the transaction: releases the lock
    finally:
        con.close()


def build_lock_holders(dsn: str) -> list[int]:
    """Backend pids holding the build lock on the catalog database (diagnostics, tests)."""
    from cellstore.engine.warehouse import load_postgres_extension, offline_connection, sql_string

    con = offline_connection()
    try:
        load_postgres_extension(con)
        con.execute(f"attach {sql_string(dsn)} as {LOCK_DB} (type postgres, read_only)")
        rows = lock_query(
            con,
            "select pid from pg_locks where locktype = 'advisory' and granted "
            f"and classid = 0 and objid = {BUILD_LOCK_KEY} and objsubid = 1",
        )
        return [r[0] for r in rows]
    finally:
        con.close()
