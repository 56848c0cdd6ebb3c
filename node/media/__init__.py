"""Video and audio through ffmpeg: probing, deterministic encodes, and the node types' graphs."""
