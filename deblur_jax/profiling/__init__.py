"""Benchmarks of compiled train steps, inference and the input pipeline."""
