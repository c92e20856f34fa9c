#!/usr/bin/env bash
# CUDA checks (not part of CI, which has no GPU): run from the repository root on a CUDA machine
# with torch, typer, rich and pyyaml installed. Prints each script's report and exit status, then
# per-step timings on CUDA (plain / in the window / after it / every step / anomaly mode).
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
for f in cuda_detach cuda_amp_ok cuda_dead_relu cuda_mixed_devices; do
  echo "=== $f ($(head -1 benchmarks/gpu/$f.py | sed 's/^# //'))"
  python3 -m gradcheck_cli run --no-color benchmarks/gpu/$f.py 2>&1 | grep -vE "^\s*$" | head -14
  echo "exit ${PIPESTATUS[0]}"
done
echo "=== timing"
python3 benchmarks/gpu/cuda_timing.py
