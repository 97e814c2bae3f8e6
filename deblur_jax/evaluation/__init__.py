"""Evaluation: image metrics, the evaluation step and results, baselines."""
