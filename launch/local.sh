#!/usr/bin/env bash
# Train on one machine with all its local devices (GPUs, TPU cores, or the CPU).
#
# Needs: deblur_jax installed (pip install -e .; '.[cuda]' for NVIDIA GPUs);
# PYTHON picks the interpreter (default python3).
# Usage: launch/local.sh [--dry-run] CONFIG WORKDIR [--config.FIELD=VALUE ...]
#   launch/local.sh configs/mimo.py /runs/mimo --config.data.dir=/data/GOPRO_Large
#   launch/local.sh configs/mimo.py:demo /tmp/deblur_demo
# Every device takes part: the global batch (config.train.batch_size) is split
# across them and must be a multiple of their number. Re-run the same command
# to resume from the latest checkpoint in WORKDIR. --dry-run prints the command.
source "$(dirname "$0")/common.sh" || exit 2
read_args config workdir -- "$@"
shift "$used"
train_command "$config" "$workdir" "$@"
run_or_print "${train[@]}"
