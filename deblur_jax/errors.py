"""The error raised for bad user input: a config field, a data file, a checkpoint."""


class InputError(ValueError):
  """Bad input from the user. The message names the field or file and what to change.

  The command-line entry points print it without a traceback and exit with
  status 2; anything else that goes wrong is a bug and keeps its traceback.
  """
