#!/usr/bin/env bash
# Train on every host of a Cloud TPU VM pod slice (v4-32, v5p-64, ...): one
# process per host, started over SSH on all workers at once.
#
# Needs: the gcloud CLI, logged in, on this machine; on every TPU worker this
# repository at DEBLUR_DIR (default ~/deblur_jax) with deblur_jax installed
# ('pip install -e .[tpu]'; PYTHON picks the interpreter, default python3), and
# a WORKDIR and data that every worker sees at the same path (an NFS or
# Filestore mount, or a bucket mounted with gcsfuse).
# Usage: launch/tpu_pod.sh [--dry-run] TPU_NAME ZONE CONFIG WORKDIR [--config.FIELD=VALUE ...]
#   launch/tpu_pod.sh my-v4-32 us-central2-b configs/mimo.py /mnt/shared/runs/mimo \
#       --config.data.dir=/mnt/shared/GOPRO_Large --config.train.batch_size=64
# Each worker runs the command in DEBLUR_DIR, so a relative CONFIG is read there.
# On TPU, JAX finds the other hosts by itself. The global batch
# (config.train.batch_size) is split over all TPU cores of the slice. Run again
# with the same WORKDIR to resume. --dry-run prints the gcloud command.
source "$(dirname "$0")/common.sh" || exit 2
read_args tpu zone config workdir -- "$@"
shift "$used"
# The remote shell gets one string: quote every argument for it. DEBLUR_DIR is
# left unquoted (when it is the default) so that its ~ expands on the worker.
train_command "$config" "$workdir" --distributed "$@"
remote="cd ${DEBLUR_DIR:-~/deblur_jax} && $(quote_command "${train[@]}")"
gcloud=(gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all)
if $dry_run; then
  quote_command "${gcloud[@]}"
  echo " --command=${remote@Q}"
  exit 0
fi
exec "${gcloud[@]}" --command="$remote"
