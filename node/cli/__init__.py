"""The ``artdag`` command-line client (``node.cli.main``)."""
