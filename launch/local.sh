#!/usr/bin/env bash
# Train on one machine with all its local devices (GPUs, TPU cores, or the CPU).
#
# Needs: deblur_jax installed (pip install -e .; '.[cuda]' for NVIDIA GPUs).
# Usage: launch/local.sh CONFIG WORKDIR [--config.FIELD=VALUE ...]
#   launch/local.sh configs/mimo.py /runs/mimo --config.data.dir=/data/GOPRO_Large
#   launch/local.sh configs/demo.py /tmp/deblur_demo
# Every device takes part: the global batch (config.train.batch_size) is split
# across them and must be a multiple of their number. Re-run the same command
# to resume from the latest checkpoint in WORKDIR.
set -euo pipefail
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then usage; exit 0; fi
if [[ $# -lt 2 ]]; then usage >&2; exit 2; fi
config=$1
workdir=$2
shift 2
exec "${PYTHON:-python3}" -m deblur_jax.main --config="$config" --workdir="$workdir" "$@"
