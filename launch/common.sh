# What every launch script shares; each sources this file first, from its own
# folder (slurm.sbatch, whose job runs a copy, from $SLURM_SUBMIT_DIR/launch or
# DEBLUR_LAUNCH_DIR). It sets bash's strict mode and defines:
#   print_help             the script's header comment block, '# ' removed
#   read_args NAME... -- "$@"
#                          -h/--help: the header, exit 0; --dry-run: dry_run=true;
#                          then sets each NAME to the next argument (too few: the
#                          header on stderr, exit 2) and `used` to how many it read
#                          (`shift "$used"` leaves the rest)
#   train_command C W ...  sets `train` to the training command for CONFIG C,
#                          WORKDIR W and the rest; PYTHON picks the interpreter
#   quote_command CMD...   prints CMD as one shell-quoted line (no newline)
#   run_or_print CMD...    with --dry-run prints CMD, otherwise runs it (exec)
set -euo pipefail

print_help() {
  # The '#' lines after the shebang, up to the first other line (#SBATCH is one).
  awk 'NR == 1 && /^#!/ { next } !/^#( |$)/ { exit } { sub(/^# ?/, ""); print }' "$0"
}

read_args() {
  local names=() name
  while [[ $1 != -- ]]; do
    names+=("$1")
    shift
  done
  shift
  dry_run=false
  used=${#names[@]}
  case "${1:-}" in
    -h | --help) print_help; exit 0 ;;
    --dry-run) dry_run=true; used=$((used + 1)); shift ;;
  esac
  if (($# < ${#names[@]})); then print_help >&2; exit 2; fi
  for name in "${names[@]}"; do
    printf -v "$name" '%s' "$1"
    shift
  done
}

train_command() {
  train=("${PYTHON:-python3}" -m deblur_jax.main --config="$1" --workdir="$2" "${@:3}")
}

quote_command() {
  local quoted
  printf -v quoted '%q ' "$@"
  printf '%s' "${quoted% }"
}

run_or_print() {
  if $dry_run; then
    quote_command "$@"
    echo
    exit 0
  fi
  exec "$@"
}
