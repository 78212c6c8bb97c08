"""An offline HTML report with PNG plots of the profiling and MoA evaluation tables."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from cellstore.errors import CellstoreError
from cellstore.profiling.controls import CONTROL_COMPOUND as CONTROL

# Published NSC / NSCB on BBBC021 for context (DESIGN §7); None where not reported.
ANCHORS = (
    ("Ljosa et al. 2013, CellProfiler + factor analysis", 0.94, None),
    ("DeepProfiler, weakly supervised (Moshkov et al. 2024)", 0.971, 0.870),
    ("Janssens et al. 2021", 0.971, None),
    ("WS-DINO (Cross-Zamirski et al. 2022)", 0.98, 0.96),
)


@dataclass
class ReportSummary:
    """The page and the images it shows."""

    html: Path
    images: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Page:
    """Collects HTML sections and PNG files in one output folder."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.parts: list[str] = []
        self.images: list[Path] = []
        self.notes: list[str] = []

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')

    def figure(self, fig: Any, name: str, caption: str) -> None:
        import matplotlib.pyplot as plt

        path = self.out_dir / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.images.append(path)
        self.parts.append(
            f'<figure><img src="{html.escape(path.name)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
            for row in rows
        )
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "nan" if np.isnan(value) else f"{value:.3f}"
    return str(value)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {row[0] for row in con.execute("show tables").fetchall()}


def chosen_variants(con: duckdb.DuckDBPyConnection, postprocessing: str | None) -> dict[str, str]:
    """Per feature source, the variant plotted: `postprocessing`, else the best by NSC."""
    rows = con.execute(
        "select feature_source, postprocessing, nsc from moa_accuracy "
        "order by feature_source, nsc desc nulls last, postprocessing"
    ).fetchall()
    chosen: dict[str, str] = {}
    for source, variant, _ in rows:
        if postprocessing is not None:
            if variant == postprocessing:
                chosen[source] = variant
        else:
            chosen.setdefault(source, variant)
    if postprocessing is not None and not chosen:
        known = sorted({r[1] for r in rows})
        raise CellstoreError(
            f"moa_accuracy has no post-processing {postprocessing!r} (has: {', '.join(known)})"
        )
    return chosen


def _accuracy_section(page: _Page, con: duckdb.DuckDBPyConnection) -> None:
    import matplotlib.pyplot as plt

    page.heading("MoA classification accuracy")
    rows = con.execute(
        "select feature_source, postprocessing, nsc, nscb, drop, n_nsc, n_nscb, map "
        "from moa_accuracy"
    ).fetchall()
    rows.sort(key=lambda r: (r[0], _variant_order(r[1])))
    page.table(
        ["feature source", "post-processing", "NSC", "NSCB", "drop", "n NSC", "n NSCB", "mAP"],
        [list(r) for r in rows],
    )
    columns = {r[0] for r in con.execute("describe moa_accuracy").fetchall()}
    if "unscored_moas" in columns:  # warehouses built before the column existed lack it
        unscored = con.execute(
            "select feature_source, any_value(unscored_moas) from moa_accuracy "
            "where unscored_moas is not null group by feature_source order by feature_source"
        ).fetchall()
        for source, moas in unscored:
            page.note(
                f"{source}: treatments of {', '.join(moas)} were not scored (an MoA needs two "
                "compounds for a neighbour from another compound to be right); a metric with "
                "no scored treatment is shown as –."
            )
    page.paragraph(
        "NSC: cosine 1-NN over treatment profiles, neighbours from other compounds. NSCB: also "
        "from another batch string; Cholesterol-lowering and Kinase inhibitors left out. "
        "mAP: mean average precision of same-MoA retrieval (other compounds)."
    )
    page.table(
        ["published (BBBC021)", "NSC", "NSCB"], [[name, nsc, nscb] for name, nsc, nscb in ANCHORS]
    )
    labels = [f"{r[0]}\n{r[1]}" for r in rows]
    positions = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4))
    # NULL (not measurable) stays a gap, never a bar at 0.
    ax.bar(
        positions - 0.2, [np.nan if r[2] is None else r[2] for r in rows], width=0.4, label="NSC"
    )
    ax.bar(
        positions + 0.2, [np.nan if r[3] is None else r[3] for r in rows], width=0.4, label="NSCB"
    )
    ax.set_xticks(positions, labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend()
    page.figure(fig, "accuracy", "NSC and NSCB per feature source and post-processing")


def _confusion_section(page: _Page, con: duckdb.DuckDBPyConnection, chosen: dict[str, str]) -> None:
    import matplotlib.pyplot as plt

    page.heading("Confusion matrices (NSC)")
    for source, variant in chosen.items():
        rows = con.execute(
            "select moa, coalesce(neighbor_moa, '(no neighbour)') from moa_neighbors "
            "where feature_source = ? and postprocessing = ? and protocol = 'nsc'",
            [source, variant],
        ).fetchall()
        if not rows:
            continue
        truth = sorted({r[0] for r in rows})
        predicted = truth + sorted({r[1] for r in rows} - set(truth))
        counts = np.zeros((len(truth), len(predicted)), dtype=int)
        for actual, guess in rows:
            counts[truth.index(actual), predicted.index(guess)] += 1
        fig, ax = plt.subplots(figsize=(0.5 * len(predicted) + 3, 0.5 * len(truth) + 2))
        ax.imshow(counts, cmap="Blues")
        for (i, j), n in np.ndenumerate(counts):
            if n:
                color = "white" if n > counts.max() / 2 else "black"
                ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color=color)
        ax.set_xticks(range(len(predicted)), predicted, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(truth)), truth, fontsize=7)
        ax.set_xlabel("MoA of the nearest neighbour")
        ax.set_ylabel("true MoA")
        # Every NSC query, scored or not (moa_accuracy leaves out MoAs with one compound).
        right = int(np.trace(counts[:, : len(truth)]))
        title = f"{source} · {variant} · {right}/{counts.sum()} neighbours of the same MoA"
        ax.set_title(title, fontsize=9)
        page.figure(
            fig, f"confusion_{_slug(source)}", f"NSC confusion matrix, {source} ({variant})"
        )


def embed_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D map of rows (n, d) for plotting: t-SNE on cosine distance, PCA for tiny n."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = x / np.where(norms == 0, 1.0, norms)
    if len(x) < 8:
        return _pca_2d(unit)
    from sklearn.manifold import TSNE

    perplexity = min(15.0, (len(x) - 1) / 3)
    tsne = TSNE(
        n_components=2, metric="cosine", init="random", perplexity=perplexity, random_state=seed
    )
    return tsne.fit_transform(unit)


def _pca_2d(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=0)
    if len(x) < 2:
        return np.zeros((len(x), 2))
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    return np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))


def _scatter_by(ax: Any, coords: np.ndarray, labels: list[str], title: str) -> None:
    import matplotlib.pyplot as plt

    names = sorted(set(labels))
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    for k, name in enumerate(names):
        rows = np.array([label == name for label in labels])
        ax.scatter(*coords[rows].T, s=14, color=cmap(k % cmap.N), label=name)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)


def _map_section(page: _Page, con: duckdb.DuckDBPyConnection, chosen: dict[str, str]) -> None:
    import matplotlib.pyplot as plt

    page.heading("Treatment profiles by MoA")
    for source, variant in chosen.items():
        frame = con.execute(
            "select moa, features from treatment_profiles where feature_source = ? "
            "and postprocessing = ? and moa is not null order by compound, concentration",
            [source, variant],
        ).fetchall()
        if len(frame) < 2:
            continue
        coords = embed_2d(np.array([r[1] for r in frame], dtype=np.float64))
        fig, ax = plt.subplots(figsize=(7, 5))
        _scatter_by(ax, coords, [r[0] for r in frame], f"{source} · {variant}")
        page.figure(fig, f"map_{_slug(source)}", f"t-SNE (cosine) of treatment profiles, {source}")


def batch_silhouette(x: np.ndarray, batches: list[str]) -> float:
    """Silhouette of batch labels under cosine distance (high: wells cluster by batch)."""
    from sklearn.metrics import silhouette_score

    if len(set(batches)) < 2 or len(set(batches)) >= len(batches):
        return float("nan")
    return float(silhouette_score(x, batches, metric="cosine"))


def _batch_section(page: _Page, con: duckdb.DuckDBPyConnection) -> None:
    import matplotlib.pyplot as plt

    page.heading("Batch effects before and after correction")
    page.paragraph(
        "Well profiles of each post-processing variant, 2-D PCA, coloured by batch (Week; "
        f"plates nest in Weeks). Each title gives the silhouette of the batch labels over the "
        f"{CONTROL} wells (cosine): how much wells group by batch, lower is better. Compare "
        "whitening with tvn: the same space, tvn adds the per-batch CORAL correction."
    )
    pairs = con.execute(
        "select distinct feature_source, postprocessing from well_profiles_normalized"
    ).fetchall()
    variants: dict[str, list[str]] = {}
    for source, variant in sorted(pairs, key=lambda p: (p[0], _variant_order(p[1]))):
        variants.setdefault(source, []).append(variant)
    for source, shown in variants.items():
        columns = min(3, len(shown))
        n_rows = -(-len(shown) // columns)
        fig, axes = plt.subplots(
            n_rows, columns, figsize=(5.5 * columns, 4.2 * n_rows), squeeze=False
        )
        for ax in axes.flat[len(shown) :]:
            ax.set_visible(False)
        for ax, variant in zip(axes.flat, shown, strict=False):
            rows = con.execute(
                "select batch, compound, features from well_profiles_normalized "
                "where feature_source = ? and postprocessing = ? order by plate, well",
                [source, variant],
            ).fetchall()
            x = np.array([r[2] for r in rows], dtype=np.float64)
            batches = [r[0] for r in rows]
            control = np.array([r[1] == CONTROL for r in rows])
            score = batch_silhouette(x[control], list(np.asarray(batches)[control]))
            _scatter_by(ax, _pca_2d(x), batches, f"{variant}: batch silhouette {score:.2f}")
        page.figure(fig, f"batches_{_slug(source)}", f"{source}: well profiles by batch")


def _training_section(page: _Page, con: duckdb.DuckDBPyConnection, tables: set[str]) -> None:
    """The SimCLR run: its settings, the per-epoch curves, and what training added."""
    import matplotlib.pyplot as plt

    page.heading("SimCLR training")
    log = con.execute(
        "select epoch, loss, pos_top1, cells_per_s, seconds, device from training_log "
        "order by epoch"
    ).fetchall()
    if not log:
        page.note("training_log is empty: no epoch completed.")
        return
    if "simclr" in tables:
        run = con.execute(
            "select encoder, size, batch_size, epochs, temperature, cells_per_epoch "
            "from simclr where checkpoint = 'final'"
        ).fetchall()
        page.table(
            ["encoder", "input px", "batch", "epochs", "τ", "cells per epoch", "device"],
            [[*r, log[-1][5]] for r in run],
        )
    if "moa_accuracy" in tables:
        gain = con.execute(
            "select t.postprocessing, u.nscb, t.nscb, t.nscb - u.nscb, u.nsc, t.nsc "
            "from moa_accuracy t join moa_accuracy u using (postprocessing) "
            "where t.feature_source = 'simclr' and u.feature_source = 'simclr_untrained'"
        ).fetchall()
        if gain:
            gain.sort(key=lambda r: _variant_order(r[0]))
            page.paragraph(
                "What training adds: the trained encoder against the same architecture with "
                "its initial weights, embedded and evaluated the same way."
            )
            page.table(
                ["post-processing", "NSCB untrained", "NSCB trained", "NSCB gain",
                 "NSC untrained", "NSC trained"],
                [list(r) for r in gain],
            )  # fmt: skip
    epochs = [r[0] for r in log]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    fig.subplots_adjust(wspace=0.5)
    left.plot(epochs, [r[1] for r in log], marker="o", label="NT-Xent loss")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    twin = left.twinx()
    twin.plot(epochs, [r[2] for r in log], color="tab:orange", marker=".", label="positive top-1")
    twin.set_ylim(0, 1)
    twin.set_ylabel("positive-pair top-1")
    right.plot(epochs, [r[3] for r in log], marker="o", color="tab:green")
    right.set_xlabel("epoch")
    right.set_ylabel("cells / s")
    right.set_ylim(bottom=0)
    for ax in (left, right):
        ax.xaxis.get_major_locator().set_params(integer=True)
    total = sum(r[4] for r in log)
    right.set_title(f"{len(log)} epochs, {total / 60:.1f} min on {log[-1][5]}", fontsize=9)
    page.figure(fig, "training", "SimCLR training: loss and in-batch accuracy; throughput")


def _variant_order(variant: str) -> tuple[int, str]:
    known = ("none", "standardize", "robustize", "whitening", "tvn")
    return (known.index(variant) if variant in known else len(known), variant)


def _cells_section(page: _Page, con: duckdb.DuckDBPyConnection) -> None:
    import matplotlib.pyplot as plt

    page.heading("Cells per well")
    counts = con.execute(
        "select plate, well, any_value(n_cells) from well_profiles "
        "where n_cells is not null group by plate, well"
    ).fetchall()
    if not counts:
        page.note(
            "No feature source here counts cells (external well profiles carry no cell counts)."
        )
        return
    values = np.array([c[2] for c in counts])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(values, bins=min(40, max(5, len(values) // 5)))
    ax.set_xlabel("cells in the well")
    ax.set_ylabel("wells")
    ax.set_title(f"{len(values)} wells, median {np.median(values):.0f} cells", fontsize=9)
    page.figure(fig, "cells_per_well", "Cells per well")


STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child, td:nth-child(2) { text-align: left; }
figure { margin: 1em 0; } img { max-width: 100%; }
figcaption, .note { color: #555; font-size: 0.9em; }
"""


def write_report(
    con: duckdb.DuckDBPyConnection,
    out_dir: Path,
    *,
    postprocessing: str | None = None,
    title: str = "cellstore profiling report",
    subtitle: str = "",
) -> ReportSummary:
    """Write `index.html` and its PNGs into out_dir from the tables `con` can see.

    Sections whose table is missing say so instead of failing, so a partial warehouse
    still gets a report.
    """
    import matplotlib
    import sklearn.manifold  # noqa: F401  (loaded before the limit below, so it applies)
    import sklearn.metrics  # noqa: F401
    from threadpoolctl import threadpool_limits

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    # Small SVDs and a 100-point t-SNE: BLAS / OpenMP threads only spin on a busy machine
    # (t-SNE took 12 s with them, measured on the shared 2-core box).
    with threadpool_limits(limits=1):
        summary = _write(con, out_dir, postprocessing, title, subtitle)
    return summary


def _write(
    con: duckdb.DuckDBPyConnection,
    out_dir: Path,
    postprocessing: str | None,
    title: str,
    subtitle: str,
) -> ReportSummary:
    page = _Page(out_dir)
    tables = _tables(con)
    chosen: dict[str, str] = {}
    if "moa_accuracy" in tables:
        _accuracy_section(page, con)
        chosen = chosen_variants(con, postprocessing)
    else:
        page.note("moa_accuracy is not built: no accuracy table.")
    for table, section in (
        ("training_log", lambda: _training_section(page, con, tables)),
        ("moa_neighbors", lambda: _confusion_section(page, con, chosen)),
        ("treatment_profiles", lambda: _map_section(page, con, chosen)),
        ("well_profiles_normalized", lambda: _batch_section(page, con)),
        ("well_profiles", lambda: _cells_section(page, con)),
    ):
        if table in tables:
            section()
        else:
            page.note(f"{table} is not built: its section is skipped.")
    path = out_dir / "index.html"
    document = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p class='note'>{html.escape(subtitle)}</p>{''.join(page.parts)}</body></html>"
    )
    temporary = path.with_suffix(".html.tmp")
    temporary.write_text(document, encoding="utf-8")
    temporary.replace(path)
    return ReportSummary(html=path, images=page.images, notes=page.notes)
