#!/usr/bin/env bash
# Train as N processes on this machine, each with M CPU devices: a multi-process
# job over loopback, to try out or test multi-host training without a cluster.
#
# Needs: bash 5.1+, deblur_jax installed (pip install -e .); PYTHON picks the
# interpreter (default python3), COORDINATOR_PORT the port (default: a free one).
# Usage: launch/multiprocess_cpu.sh [--dry-run] N M CONFIG WORKDIR [--config.FIELD=VALUE ...]
#   launch/multiprocess_cpu.sh 2 2 configs/mimo.py:tiny /tmp/deblur_2x2
# The global batch (config.train.batch_size) is split over all N x M devices.
# Process 0 logs to the console, process i > 0 to WORKDIR/logs/process_i.log.
# If one process fails the others are stopped and its exit status is returned.
# --dry-run prints the commands instead of running them.
source "$(dirname "$0")/common.sh" || exit 2
read_args num_processes devices_per_process config workdir -- "$@"
shift "$used"
for value in "$num_processes" "$devices_per_process"; do
  if ! [[ "$value" =~ ^[1-9][0-9]*$ ]]; then
    echo "Error: N and M must be positive integers, got '$value'." >&2
    exit 2
  fi
done
python=${PYTHON:-python3}
port=${COORDINATOR_PORT:-$("$python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')}
coordinator=127.0.0.1:$port
# Each process appends its device count to the XLA_FLAGS it inherits.
xla_flags="${XLA_FLAGS:+$XLA_FLAGS }--xla_force_host_platform_device_count=$devices_per_process"
# JAX writes its persistent compilation cache from process 0 only: with a cache,
# process 0 would load its programs while the others compile theirs, and the CPU
# collectives (Gloo) stop waiting for the late ones after 30 s. Off unless set.
cache="${JAX_ENABLE_COMPILATION_CACHE:-false}"

command_of() {  # sets cmd to the argument list of process $1, overrides $2...
  local id=$1
  shift
  train_command "$config" "$workdir" --distributed --coordinator_address="$coordinator" \
    --num_processes="$num_processes" --process_id="$id" "$@"
  cmd=(env "XLA_FLAGS=$xla_flags" "JAX_COORDINATOR_BIND_ADDRESS=$coordinator"
       "JAX_ENABLE_COMPILATION_CACHE=$cache" "${train[@]}")
}

if $dry_run; then
  for ((i = 0; i < num_processes; i++)); do
    command_of "$i" "$@"
    log=""
    if ((i > 0)); then log=" > $(printf '%q' "$workdir/logs/process_$i.log") 2>&1"; fi
    quote_command "${cmd[@]}"
    echo "$log &"
  done
  echo wait
  exit 0
fi
if ((BASH_VERSINFO[0] < 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] < 1))); then
  echo "Error: $0 needs bash 5.1 or later (this is $BASH_VERSION)." >&2
  exit 2
fi

mkdir -p "$workdir/logs"
declare -A process_of  # pid -> process id
stop_all() {  # SIGTERM (JAX may save a checkpoint first), SIGKILL after 30 s
  local pids=("${!process_of[@]}") pid
  kill "${pids[@]}" 2>/dev/null || true
  for ((tick = 0; tick < 60; tick++)); do
    for pid in "${pids[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then sleep 0.5; continue 2; fi
    done
    return 0
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
for ((i = 0; i < num_processes; i++)); do
  command_of "$i" "$@"
  if ((i == 0)); then
    "${cmd[@]}" &
  else
    "${cmd[@]}" > "$workdir/logs/process_$i.log" 2>&1 &
  fi
  process_of[$!]=$i
done

status=0
for ((k = 0; k < num_processes; k++)); do
  finished=""
  if wait -n -p finished; then
    unset "process_of[$finished]"
  else
    status=$?
    failed=${process_of[$finished]}
    unset "process_of[$finished]"
    # The first to fail need not be the cause: a process with an error can wait
    # for the others at exit, which then fail for want of it. Read every log.
    echo "Process $failed failed with exit status $status; stopping the others." \
      "Logs: process 0 above, process i in $workdir/logs/process_i.log." >&2
    stop_all
    wait || true
    break
  fi
done
exit "$status"
