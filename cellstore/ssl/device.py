"""Device selection ('auto' | 'cpu' | 'cuda' | 'cuda:N') and peak-memory readings."""

from __future__ import annotations

import resource
import sys

import torch


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The torch.device for a setting; asking for CUDA where there is none is a one-line error."""
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r}: CUDA is not available on this machine "
                "(use device='cpu' or 'auto')"
            )
        device = torch.device(text)
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {name!r}: this machine has {count} CUDA device(s)")
        return device
    raise ValueError(f"device {name!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window (CUDA only; the process RSS peak cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, what was measured): CUDA max_memory_allocated since the last reset, or on CPU
    the process's peak resident set size since it started (getrusage ru_maxrss)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), "process_peak_rss"
