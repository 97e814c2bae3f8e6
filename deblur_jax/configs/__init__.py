"""The shipped experiment configurations: `--config=configs/NAME.py[:ARG]` names one of
these files from any folder (see deblur_jax.cli.command_line); each `get_config(arg)`
builds on `common.base_config()`."""
