#!/usr/bin/env bash
# The GPU check, in one go (under 8 minutes on one 8-GPU node or one H100/H200):
#   1. install (make install: the pinned torch/torchvision wheels carry CUDA),
#   2. the tests marked `gpu` (augmentation, bf16 training and resume on CUDA),
#   3. the paper preset (ResNet-50, 96 px, batch 256): the real pipeline vs a bare loop of the
#      same model, with MFU against the device's bf16 peak (bench_train.py),
#   4. embedding inference vs a bare forward pass (bench_embed.py),
#   5. the real training loop on 1 GPU and on all GPUs with DDP (bench_ddp.py),
# then prints the tables one after another. Run from anywhere: bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
make install >/dev/null
PY=.venv/bin/python
$PY - <<'PY'
import torch
assert torch.cuda.is_available(), "gpu_check: no CUDA device visible to torch"
print("gpu_check:", torch.cuda.device_count(), "x", torch.cuda.get_device_name(0), "| torch", torch.__version__)
PY
.venv/bin/pytest -q -m gpu -p no:cacheprovider 2>&1 | tail -3 | tee "$OUT/gpu_tests.txt"
$PY benchmarks/bench_train.py --preset paper --steps 40 --repeats 2 --device cuda | tee "$OUT/bench_train.txt"
$PY benchmarks/bench_embed.py --model resnet50 --size 96 --crop 96 --crops 8192 --batch 512 \
    --device cuda | tee "$OUT/bench_embed.txt"
$PY benchmarks/bench_ddp.py --preset paper --steps 30 --devices 1,all --device cuda \
    2>/dev/null | tee "$OUT/bench_ddp.txt"
echo "gpu_check: tables also in $OUT"
