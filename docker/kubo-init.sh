#!/bin/sh
# Kubo config for docker-compose.yml's ipfs service. The ipfs/kubo image runs the scripts in
# /container-init.d as the ipfs user before every daemon start (after `ipfs init` on the
# first), so the settings also reach a repository that an older image made. They are the
# keys of kubo_config() in node/services.py that the nodes rely on; everything else stays as
# `ipfs init` wrote it. Not the "server" init profile: its address filters would refuse the
# private-network peers that the allowlist below is for.
set -eu

# `ipfs config` refuses a repository that needs migrating (one an older Kubo image made), and
# the daemon's --migrate=true comes only after this script; this is a no-op on a current one.
ipfs repo migrate

# Pubsub carries the nodes' state announcements; IPNS over pubsub speeds up IPNS between
# peers. Config, since Kubo deprecated the --enable-pubsub-experiment and
# --enable-namesys-pubsub daemon flags.
ipfs config --json Pubsub.Enabled true
ipfs config --json Ipns.UsePubsub true
ipfs config Pubsub.Router gossipsub

# Peers on loopback bypass libp2p's system-wide connection limits. Only loopback: this daemon
# is on the public network, where Docker's userland proxy (IPv6, hairpin) makes strangers appear
# to come from the bridge's private address. Keep equal to LOOPBACK_NETWORKS in
# node/services.py, what the embedded daemon allowlists when it joins the public network
# (tests/test_compose.py checks it).
ipfs config --json Swarm.ResourceMgr.Allowlist '["/ip4/127.0.0.0/ipcidr/8", "/ip6/::1/ipcidr/128"]'

ipfs config Plugins.Plugins.telemetry.Config.Mode off

# Bootstrap, Routing, AutoConf, AutoTLS, providing and NAT traversal keep Kubo's defaults, which
# join the public IPFS network: this daemon is a production server with its swarm open on 4001,
# where the embedded one (node/services.py) stays private unless told otherwise.
