"""Weights from other frameworks: the PyTorch reader and the converters."""
