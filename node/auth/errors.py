"""Errors of authentication and permissions."""

from node.errors import Unauthorized


class AuthRequired(Unauthorized):
    code = "unauthorized"
