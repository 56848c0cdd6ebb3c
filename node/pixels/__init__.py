"""Pixel math on RGB arrays: image reading and writing, the effect registry, image node types.

The lowest package layer (above the foundation modules): numpy and Pillow only, no I/O beyond
image files; both ``executor`` (images) and ``media`` (video frames) use it.
"""
