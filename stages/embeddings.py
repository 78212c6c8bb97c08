"""Cell embeddings: every crop through the trained SimCLR encoder and its untrained control."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cellstore.stage import Parts, stage


@stage(incremental="image_id", unhashed=["device", "batch_size", "read_rows"])
def embeddings(
    crops: Any,
    simclr: Path,
    ctx: Any,
    *,
    device: str = "auto",
    batch_size: int = 512,
    read_rows: int = 8192,
) -> Any:
    """h = the encoder's pooled feature (no projection head, no augmentation) of every crop,
    resized to the training size and normalised as in training.

    Grain: (cell_id, model). model "simclr" is the trained encoder, "simclr_untrained" the
    same architecture with its initial weights (the control); both are feature sources.
    Incremental on image_id: a new plate embeds only its own cells; a retrained encoder (a
    new `simclr` artifact) re-embeds everything. simclr_run names the artifact version.
    """
    from cellstore.ssl.tables import embed_stage

    driver = crops.select("cell_id, image_id, plate, well, crop, shape, dtype")
    total = driver.aggregate("count(*)").fetchone()[0]
    ctx.progress(0, total=total)
    reader = driver.fetch_record_batch(read_rows)
    part = embed_stage(
        reader,
        simclr,
        ctx.parts_dir / "embeddings.parquet",
        device=device,
        batch_size=batch_size,
        progress=ctx.progress,
    )
    return Parts([part] if part else [])
