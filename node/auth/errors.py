"""Errors of authentication and permissions."""

from node.errors import Forbidden, Unauthorized, Unavailable


class AuthRequired(Unauthorized):
    code = "unauthorized"


class L2Unavailable(Unavailable):
    """The L2 that issued a token cannot be asked about it: nobody gets in (fail closed)."""

    code = "l2_unavailable"


class CsrfRefused(Forbidden):
    """A cookie-authenticated change from another site's page."""

    code = "csrf_refused"
