"""Deblurring frames, images and videos with a trained network."""
