#!/usr/bin/env bash
# The prepared GPU session: CUDA-path checks, an end-to-end ViT-B training run under
# torchrun with bf16 on a small synthetic set, and the GPU benchmark. Writes logs to
# ${OUT:-logs}. Run from the repository root on a CUDA machine.
set -uo pipefail
out=${OUT:-logs}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia_smi.txt"
python3 -m bench.check_cuda 2>&1 | tee "$out/check_cuda.log"
data=/tmp/budsam_gpu_data
python3 -m utils.data.synthetic --out "$data" --n_train 16 --n_valid 4 --n_test 4 --seed 0 --workers 8 \
    > "$out/synthetic.log" 2>&1 || echo "synthetic data FAILED"
python3 -c "
import torch; from bench.check_cuda import build_sam_vit_b
torch.save({'model': build_sam_vit_b().state_dict()}, '/tmp/random_vit_b.pth')"
for parts in image_encoder,mask_decoder mask_decoder; do
  timeout 300 python3 -m torch.distributed.run --nproc_per_node 1 budsam_train_multi.py -i "$data" -task_name gpu_check \
      -work_dir /tmp/budsam_gpu_runs -model_type vit_b -checkpoint /tmp/random_vit_b.pth \
      --train_parts "$parts" --amp bf16 -num_epochs 2 -batch_size 2 -num_workers 4 \
      > "$out/train_${parts/,/_}.log" 2>&1
  echo "training $parts: exit $?"; tail -n 6 "$out/train_${parts/,/_}.log"
done
timeout 300 python3 -m torch.distributed.run --nproc_per_node 1 budsam_infer.py -i "$data/test/Raw_audios" \
    -o /tmp/budsam_gpu_infer -checkpoint /tmp/random_vit_b.pth -model_type vit_b --amp bf16 \
    > "$out/infer.log" 2>&1
echo "inference under torchrun: exit $?"; tail -n 3 "$out/infer.log"
timeout 360 python3 -m bench.bench_gpu --engine 2>&1 | tee "$out/bench_gpu.log"
