"""Tokens, L2 verification, revocation, permissions and deletion rules."""
