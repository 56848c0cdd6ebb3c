"""Path parameters: how routes match them, and what the handlers accept of them."""

from __future__ import annotations


def path_parameter(name: str, *siblings: str) -> str:
    """A route's last path segment ``{name}`` that is never one of ``siblings``, the literal
    segments of routes beside it: a concrete path wins over a pattern for every method, as
    OpenAPI reads paths, so ``DELETE /cache/upload`` is 405 (``Allow: POST``), not ``DELETE
    /cache/{ref}`` of a ref ``upload``, and a 405 never names a pattern's methods."""
    return f"{{{name}:(?!(?:{'|'.join(siblings)})$)[^{{}}/]+}}"
