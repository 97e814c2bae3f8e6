"""The GoPro TFDS dataset ('gopro'); importing this registers it with TFDS."""

from deblur_jax.data.gopro.gopro_dataset_builder import GoPro

__all__ = ['GoPro']
