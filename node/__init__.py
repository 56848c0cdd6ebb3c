"""Art DAG L1 peer node."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("artdag-node")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
