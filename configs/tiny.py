"""A tiny MIMO-UNet that trains for a few steps in seconds: for tests and smoke runs
(the same as `configs/mimo.py:tiny`)."""

from configs import mimo


def get_config():
  return mimo.get_config('tiny')
