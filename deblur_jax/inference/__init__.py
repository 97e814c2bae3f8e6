"""Inference: deblurring whole, tiled or ensembled images, and export."""
