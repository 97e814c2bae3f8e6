"""Input data, from files to batches.

pairs.py finds and checks blurred/sharp pairs on disk; image_files.py reads and
writes single images (no TensorFlow); sources/ holds one module per value of
config.data.source behind one interface (sources/__init__.py); pipeline.py
turns a source into training batches and evaluation batches; transforms.py
holds their TensorFlow ops; cache.py keeps decoded training images; degrade/
makes synthetic blur (kernels, noise, JPEG, paired datasets); gopro/ is the
GoPro TFDS builder. pairs.py, image_files.py and degrade/ import no TensorFlow.
"""
