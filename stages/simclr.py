"""SimCLR training on the crops table: an artifact stage whose files are the checkpoints."""

from __future__ import annotations

from typing import Any

from cellstore.stage import stage

# Hyper-parameters a [stages.simclr] table may override; None keeps the preset's value.
HYPER_PARAMETERS = (
    "encoder",
    "size",
    "batch_size",
    "epochs",
    "warmup_epochs",
    "lr",
    "weight_decay",
    "temperature",
    "projection_dim",
    "weights",
    "buffer_bytes",
)


@stage(
    outputs=["simclr", "training_log"],
    artifact=True,
    files=["crops"],  # the training processes read the Parquet files themselves
    unhashed=["device", "devices"],  # where it trains does not change what it learns
)
def simclr(
    crops: Any,
    ctx: Any,
    *,
    preset: str = "demo",
    device: str = "auto",
    devices: int = 1,
    seed: int = 0,
    max_cells: int | None = None,
    encoder: str | None = None,
    size: int | None = None,
    batch_size: int | None = None,
    epochs: int | None = None,
    warmup_epochs: float | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    temperature: float | None = None,
    projection_dim: int | None = None,
    weights: str | None = None,
    buffer_bytes: int | None = None,
) -> dict[str, Any]:
    """Train a SimCLR encoder on every crop (or a `max_cells` subset; 0 = every crop).

    preset: "demo" (small CNN, 32 px, 3 epochs of a 30k-crop subset: minutes on a CPU) or "paper"
    (ResNet-50, 96 px, batch 256, τ 0.1, 600 epochs: for a GPU); any hyper-parameter above
    overrides it. device: auto | cpu | cuda | cuda:N; devices: DDP processes (one per GPU).
    buffer_bytes: host memory for the shuffle buffer (default 256 MiB), whatever the table size.
    A run killed mid-training resumes from its last completed epoch (same fingerprint).

    simclr grain: checkpoint ("initial" = the untrained weights, the control; "final").
    training_log grain: epoch.
    """
    from cellstore.ssl.tables import train_stage

    overrides = {k: v for k, v in locals().items() if k in HYPER_PARAMETERS and v is not None}
    if max_cells is not None:
        overrides["max_cells"] = max_cells or None  # 0: every crop
    return train_stage(
        crops.files,
        ctx.artifact_dir,
        preset=preset,
        device=device,
        devices=devices,
        seed=seed,
        resume=ctx.is_resume,
        progress=ctx.progress,
        scratch=ctx.parts_dir,  # the training set in canonical order (deleted after the run)
        **overrides,
    )
