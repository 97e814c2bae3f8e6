"""Data sources: where training and evaluation pairs come from."""
