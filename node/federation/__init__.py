"""The node's published state: signed state documents, snapshots, IPNS publishing, trusted
peers, recovery, and the peering of IPFS daemons. Above ``store`` and ``sync``; below ``executor``.
"""
