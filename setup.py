"""Packaging beyond pyproject.toml: the top-level configs/ folder is installed as
the package `deblur_jax.configs`, so that `--config=configs/NAME.py` works from any
folder after `pip install .` (deblur_jax.cli.command_line finds the installed copy)."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=['deblur_jax', 'deblur_jax.*']) + ['deblur_jax.configs'],
    package_dir={'deblur_jax.configs': 'configs'},
)
