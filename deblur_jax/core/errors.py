"""The errors that the command-line tools report in one line, without a traceback.

The entry points print them as 'Error: ...' and exit with status 2; anything
else that goes wrong is a bug and keeps its traceback.
"""


class InputError(ValueError):
  """Bad input from the user. The message names the field or file and what to change."""


class TrainingError(RuntimeError):
  """Training stopped for a reason that is not a bug in the code: for example the
  loss diverged. The message says what happened and what was kept."""


# What the command-line tools report in one line.
REPORTED_ERRORS = (InputError, TrainingError)
