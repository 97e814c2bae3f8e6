"""Input data: pair discovery (pairs.py), blur kernels (kernels.py), and the
TensorFlow input pipelines (input_pipeline.py, demo.py, transforms.py).

Only the last three import TensorFlow; models, steps and tools do not.
"""
