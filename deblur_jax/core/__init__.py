"""What every role shares: errors, atomic files, checkpoints, name lookups."""
