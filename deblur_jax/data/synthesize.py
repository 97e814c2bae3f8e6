"""`python -m deblur_jax.data.synthesize`: the documented name of deblur_jax.synthesize."""
from deblur_jax.synthesize import run  # noqa: I001
if __name__ == '__main__':
  run()
