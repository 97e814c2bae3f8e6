"""Synthetic degradations: blur kernels, noise, JPEG, and blurring files."""
