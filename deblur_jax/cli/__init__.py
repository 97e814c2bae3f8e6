"""The command-line tools' shared plumbing: flags, errors as exit status, process set-up."""
