"""Redis keys and indexes, claims, and the node's published state."""
