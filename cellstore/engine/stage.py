"""The `@stage` decorator: how a Python function declares itself a stage."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Parameter names the runner fills itself instead of with an upstream table.
RESERVED_PARAMS = frozenset({"ctx"})


@dataclass(frozen=True)
class StageSpec:
    """What the decorator records about a Python stage."""

    func: Callable[..., Any]
    name: str
    outputs: tuple[str, ...]
    inputs: tuple[str, ...]
    settings: dict[str, Any]
    incremental_key: tuple[str, ...] | None
    incremental_input: str | None
    artifact: bool
    version: str
    wants_ctx: bool
    watch: Callable[[dict[str, Any], StageContext], str] | None = None
    unhashed: frozenset[str] = frozenset()
    partitions: dict[str, str] = field(default_factory=dict)
    files: frozenset[str] = frozenset()
    compare: tuple[str, ...] | None = None


@dataclass
class StageContext:
    """Handed to a stage that asks for a `ctx` parameter.

    `artifact_dir` is the run's working folder for artifact stages (None otherwise). It is
    `<warehouse>/artifacts/<stage>/inprogress-<fingerprint>/` while the stage runs, kept if
    the run fails or is killed, and handed back to the next run of the same fingerprint
    (same code, settings and inputs) with `is_resume = True`: resume from the checkpoints
    found there. Only when the stage succeeds and commits is the folder published (renamed
    to `artifacts/<stage>/<run_id>/`, the path downstream stages receive); a run with
    another fingerprint starts from an empty folder, and `cellstore gc` removes in-progress
    folders of fingerprints that are no longer current;
    `parts_dir` is a scratch folder for Parquet parts written by workers (see `Parts`);
    `progress(advance, total=None)` moves the build's progress bar;
    `cache_dir` is a persistent per-warehouse folder for derived inputs (a generated demo
    source, say); `settings` holds the resolved settings, `config` the project's config.
    """

    stage: str
    artifact_dir: Path | None
    parts_dir: Path
    cache_dir: Path
    settings: dict[str, Any]
    config: Any
    is_incremental_run: bool = False
    is_resume: bool = False
    progress: Callable[..., None] = field(default=lambda advance=1, total=None: None)


@dataclass(frozen=True)
class Parts:
    """A stage result made of Parquet files on disk (written by workers).

    The runner loads them into the warehouse without pulling them through the driver.
    """

    paths: Sequence[Path]


@dataclass(frozen=True)
class TableFiles:
    """An upstream table as the Parquet files of its committed snapshot.

    Asked for with `@stage(files=["crops"])`: the `crops` parameter then receives this
    instead of a relation, so processes the stage starts (data-loader workers, dask
    workers, DDP ranks) read the files directly, e.g. `pyarrow.dataset.dataset(paths)` or
    `pyarrow.parquet.ParquetFile(path)`, without the runner's DuckDB connection.
    files: [(absolute path, n_rows)] in catalog order; `n_rows` sums to `n_rows`.
    The runner guarantees the files hold exactly the table's rows: DuckLake keeps rows
    deleted by an incremental run in delete files (or inlined in the catalog) that plain
    Parquet readers do not apply, so such a table is first compacted (inlined data flushed,
    deletes merged into rewritten files), in a snapshot of its own. The files are immutable;
    use them during the stage's run only (gc may delete files of expired snapshots).
    Rewritten files may carry DuckLake's own `_ducklake_internal_*` columns: read `columns`
    (the table's columns), e.g. `pyarrow.parquet.read_table(path, columns=list(t.columns))`.
    """

    table: str
    snapshot_id: int
    files: tuple[tuple[str, int], ...]
    columns: tuple[str, ...] = ()

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.files]

    @property
    def n_rows(self) -> int:
        return sum(n for _, n in self.files)


def stage(
    func: Callable[..., Any] | None = None,
    *,
    outputs: Sequence[str] | None = None,
    incremental: str | Sequence[str] | None = None,
    incremental_input: str | None = None,
    artifact: bool = False,
    version: str = "1",
    watch: Callable[[dict[str, Any], StageContext], str] | None = None,
    unhashed: Sequence[str] = (),
    partitions: dict[str, str] | None = None,
    files: Sequence[str] = (),
    compare: Sequence[str] | None = None,
) -> Any:
    """Register a function as a stage named after the function.

    Positional parameters name upstream tables; keyword-only parameters are settings
    (defaults here, overrides from `[stages.<name>]` in cellstore.toml).

    Input relations share one DuckDB connection, and a DuckDB result stream
    (`fetch_record_batch`, `to_arrow_reader`) ends silently as soon as that connection runs
    another query: drain a stream before querying another input, or read in chunks with
    separate queries (one plate at a time, say).

    outputs: table names the stage writes when it returns a dict (default: its name).
    incremental: key column(s); the stage then receives only the rows of its driver,
        `incremental_input` (default: its first input), that are new, whose content changed
        (a content hash per key is kept in `cellstore_meta."<stage>__processed"`), or that
        lie in a partition a side input changed (below); output rows of those keys and of
        keys that vanished from the driver are deleted, the result appended.
    compare: the driver columns the output depends on (default: all), hashed to tell a
        changed key: bookkeeping columns (a CSV row number, say) then do not recompute it.
    partitions: how each side input (an input other than the driver) partitions the stage,
        as {input: column}, the column present in both the side input and the driver:
        `partitions={"illumination": "plate"}` means a plate's rows depend only on that
        plate's illumination rows, so when `illumination` changes only the plates whose
        rows changed are recomputed. A side input not named here (or an artifact) changing
        makes the next run a full rebuild: no old row can be trusted.
    files: inputs to receive as `TableFiles` (the Parquet files of the committed table)
        instead of a relation.
    artifact: the stage writes files into `ctx.artifact_dir`; its table is either what it
        returns or, if it returns None, a manifest of the files.
    version: bump to force a rebuild (the fingerprint already covers the stage file, every
        project module it imports, transitively, and the installed versions of the
        third-party packages those import).
    watch: called with the resolved settings and a context (its `cache_dir` and `config`
        are set), returns a cheap digest of outside state the stage reads (a source
        folder's listing, say); a new digest means a rebuild.
    unhashed: settings that change how the stage runs but not what it outputs (a dask
        scheduler address, a worker count): changing them does not trigger a rebuild.
    """

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)
        inputs: list[str] = []
        settings: dict[str, Any] = {}
        for param in sig.parameters.values():
            if param.name in RESERVED_PARAMS:
                continue
            if param.kind is inspect.Parameter.KEYWORD_ONLY:
                if param.default is inspect.Parameter.empty:
                    raise TypeError(
                        f"stage {fn.__name__}: setting {param.name!r} needs a default value"
                    )
                settings[param.name] = param.default
            elif param.kind in (
                inspect.Parameter.POSITIONAL_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
            ):
                inputs.append(param.name)
            else:
                raise TypeError(f"stage {fn.__name__}: *args / **kwargs are not supported")
        key = (incremental,) if isinstance(incremental, str) else incremental
        if key is not None and not inputs:
            raise TypeError(f"stage {fn.__name__}: an incremental stage needs an input table")
        if incremental_input is not None and incremental_input not in inputs:
            raise TypeError(
                f"stage {fn.__name__}: incremental_input {incremental_input!r} is not a parameter"
            )
        spec = StageSpec(
            func=fn,
            name=fn.__name__,
            outputs=tuple(outputs) if outputs else (fn.__name__,),
            inputs=tuple(inputs),
            settings=settings,
            incremental_key=tuple(key) if key else None,
            incremental_input=(incremental_input or inputs[0]) if key else None,
            artifact=artifact,
            version=version,
            wants_ctx="ctx" in sig.parameters,
            watch=watch,
            unhashed=frozenset(unhashed),
            partitions=dict(partitions or {}),
            files=frozenset(files),
            compare=tuple(compare) if compare is not None else None,
        )
        for side, column in spec.partitions.items():
            if side not in inputs or side == spec.incremental_input or key is None:
                raise TypeError(
                    f"stage {fn.__name__}: partitions names {side!r}, which is not a side input "
                    "of an incremental stage"
                )
            if not isinstance(column, str):
                raise TypeError(f"stage {fn.__name__}: partitions[{side!r}] must be a column")
        if compare is not None and key is None:
            raise TypeError(f"stage {fn.__name__}: compare needs an incremental stage")
        unknown_files = sorted(set(files) - set(inputs))
        if unknown_files:
            raise TypeError(f"stage {fn.__name__}: files names no input: {unknown_files}")
        if spec.name not in spec.outputs:
            raise TypeError(f"stage {fn.__name__}: outputs must include the stage's own name")
        unknown = sorted(set(unhashed) - set(settings))
        if unknown:
            raise TypeError(f"stage {fn.__name__}: unhashed names no setting: {unknown}")
        fn.__cellstore_stage__ = spec  # type: ignore[attr-defined]
        return fn

    return register(func) if func is not None else register
