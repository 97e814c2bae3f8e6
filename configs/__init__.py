"""Experiment configurations: `python -m deblur_jax.main --config=configs/NAME.py`."""
