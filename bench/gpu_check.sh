#!/usr/bin/env bash
# The CUDA path on a machine with an NVIDIA GPU: device=auto must pick CUDA, the in-memory
# loader must serve batches on the GPU, and bf16 (auto) and fp16 (with a gradient scaler)
# must train. Prints the time-to-accuracy table for each precision and writes JSON files
# into ${1:-bench/results}. Needs the project's Python dependencies (hydra-core, omegaconf)
# and the data (FMNIST_DIR or the usual lookup).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results}
mkdir -p "$out"
PY=${PYTHON:-python3}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" - <<'PY'
import torch
from hpo.training.devices import resolve_device
from hpo.training.precision import resolve_precision
from data import TensorBatchLoader

device = resolve_device("auto")
precision = resolve_precision("auto", device)
print(f"torch {torch.__version__}; device=auto -> {device}; precision=auto -> {precision.name}")
assert device.type == "cuda", "device=auto did not pick CUDA"
loader = TensorBatchLoader(
    torch.randint(0, 256, (512, 28, 28), dtype=torch.uint8),
    torch.randint(0, 10, (512,)),
    batch_size=128, mean=0.3, std=0.35, shuffle=True, device=device,
)
x, y = next(iter(loader))
print(f"loader batch on {x.device}, {tuple(x.shape)}, channels_last={x.is_contiguous(memory_format=torch.channels_last)}")
assert x.is_cuda and y.is_cuda
PY

for precision in auto fp32 fp16; do
  "$PY" bench/time_to_accuracy.py --device auto --precision "$precision" \
    --json "$out/time_to_accuracy_cuda_$precision.json"
done
