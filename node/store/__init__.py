"""Content-addressed storage over IPFS."""
