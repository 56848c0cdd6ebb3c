"""Errors of the IPFS-backed content store."""

from node.errors import InvalidInput, NodeError, NotFound, Unavailable


class IpfsUnavailable(Unavailable):
    code = "ipfs_unavailable"


class IpfsTimeout(IpfsUnavailable):
    code = "ipfs_timeout"


class IpfsError(NodeError):
    """The daemon answered, but with an error we did not expect."""

    code = "ipfs_error"


class ContentNotFound(NotFound):
    code = "not_found"


class InvalidCid(InvalidInput):
    code = "invalid_cid"
