"""Kubo as the embedded daemon: which binary runs, the config the node writes, a repository
another implementation left, and daemons of one cluster peered with no configuration."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from multiformats import CID, multihash

from node import kubo
from node.config import Settings
from node.federation.peering import NODE_FIELD, STALE_S
from node.http.appkeys import NODE
from node.services import JS_IPFS_ASIDE, LOCAL_NETWORKS, LOOPBACK_NETWORKS, REFILL_MARKER, EmbeddedServices
from node.store.ipfs import IpfsClient
from node.sync.keys import Keys
from tests.helpers import Client, NodeClient, poll_async, upload


def _ipfs_config(services: EmbeddedServices) -> dict[str, object]:
    config: dict[str, object] = json.loads((services.settings.data_dir / "ipfs" / "config").read_text())
    return config


def test_the_daemon_is_kubo_of_a_supported_version(own_ipfs: EmbeddedServices) -> None:
    """The embedded daemon is Kubo, at least the minimum the node supports."""
    binary = kubo.find_kubo()
    version = kubo.version_of(binary)
    assert version is not None and version >= kubo.MIN_VERSION
    assert own_ipfs.processes["ipfs"].argv[:2] == [str(binary), "daemon"]


def test_daemon_flags_migrate_and_nothing_deprecated(own_ipfs: EmbeddedServices) -> None:
    """Repositories are migrated on upgrades; no deprecated pubsub flag is passed."""
    argv = own_ipfs.processes["ipfs"].argv
    assert "--migrate=true" in argv
    assert not [flag for flag in argv if "pubsub" in flag]
    log = (own_ipfs.settings.logs_dir / "ipfs.log").read_text()
    assert "deprecated" not in log.lower()


def test_config_private_swarm_pubsub_and_local_limits(own_ipfs: EmbeddedServices) -> None:
    """Loopback API, gateway and swarm; no bootstrap, DHT, mDNS, AutoConf or telemetry;
    pubsub and IPNS over pubsub on; local networks exempt from connection limits; 0600."""
    config = _ipfs_config(own_ipfs)
    addresses = config["Addresses"]
    assert isinstance(addresses, dict)
    assert addresses["API"].startswith("/ip4/127.0.0.1/tcp/")
    assert addresses["Gateway"].startswith("/ip4/127.0.0.1/tcp/")
    assert [address.split("/tcp/")[0] for address in addresses["Swarm"]] == ["/ip4/127.0.0.1"]
    assert config["Bootstrap"] == []
    assert config["Routing"] == {"Type": "none", "DelegatedRouters": []}
    assert config["AutoConf"] == {"Enabled": False}
    assert config["Discovery"] == {"MDNS": {"Enabled": False}}
    assert config["Pubsub"] == {"Enabled": True, "Router": "gossipsub", "DisableSigning": False}
    ipns = config["Ipns"]
    assert isinstance(ipns, dict) and ipns["UsePubsub"] is True
    swarm = config["Swarm"]
    assert isinstance(swarm, dict) and swarm["ResourceMgr"]["Allowlist"] == list(LOCAL_NETWORKS)
    assert config["Plugins"] == {"Plugins": {"telemetry": {"Config": {"Mode": "off"}}}}
    config_path = own_ipfs.settings.data_dir / "ipfs" / "config"
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o600


async def test_the_daemon_announces_only_loopback(own_ipfs: EmbeddedServices) -> None:
    """A default node's daemon is dialled on loopback only: nothing leaves the machine."""
    assert own_ipfs.settings.ipfs_api is not None
    async with aiohttp.ClientSession() as session:
        answer = await IpfsClient(own_ipfs.settings.ipfs_api, session).id()
    assert answer["Addresses"]
    assert all(address.startswith("/ip4/127.0.0.1/") for address in answer["Addresses"])


def test_swarm_settings_open_the_swarm(daemons: EmbeddedServices, tmp_path: Path) -> None:
    """ARTDAG_IPFS_SWARM, _PUBLIC and _MDNS reach the daemon's config."""
    settings = Settings.from_env(
        {
            "ARTDAG_DATA_DIR": str(tmp_path / "open"),
            "ARTDAG_REDIS_URL": str(daemons.settings.redis_url),
            "ARTDAG_IPFS_SWARM": "/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/udp/0/quic-v1",
            "ARTDAG_IPFS_PUBLIC": "true",
            "ARTDAG_IPFS_MDNS": "yes",
        }
    )
    with EmbeddedServices(settings) as services:
        config = _ipfs_config(services)
    addresses = config["Addresses"]
    assert isinstance(addresses, dict)
    assert addresses["Swarm"] == ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"]
    assert config["Bootstrap"] == ["auto"]
    assert config["Routing"] == {"Type": "auto", "DelegatedRouters": ["auto"]}
    assert config["Discovery"] == {"MDNS": {"Enabled": True}}
    swarm = config["Swarm"]
    assert isinstance(swarm, dict) and swarm["ResourceMgr"]["Allowlist"] == list(LOOPBACK_NETWORKS)


def test_a_bad_swarm_address_is_a_clear_error(tmp_path: Path) -> None:
    """A swarm address that is no multiaddr is refused before anything starts."""
    with pytest.raises(ValueError, match=r"ARTDAG_IPFS_SWARM: each address must be a multiaddr"):
        Settings.from_env({"ARTDAG_DATA_DIR": str(tmp_path), "ARTDAG_IPFS_SWARM": "0.0.0.0:4001"})


def _version_script(path: Path, version: str) -> Path:
    """An executable that answers ``version --number`` as a Kubo of ``version`` would."""
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    return path


def test_an_unsupported_ipfs_on_path_is_passed_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An `ipfs` on PATH older than the minimum (or not Kubo) gives way to the pinned build;
    with no pinned build either, the error names the old one and what to do."""
    old = _version_script(tmp_path / "ipfs", "0.30.0")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    built = _version_script(tmp_path / "built-ipfs", kubo.pinned_version())
    monkeypatch.setattr(kubo, "BUILT_BINARY", built)
    assert kubo.version_of(old) == (0, 30, 0)
    assert kubo.find_kubo() == built
    monkeypatch.setattr(kubo, "BUILT_BINARY", tmp_path / "not-built")
    with pytest.raises(kubo.KuboNotFound, match=rf"{old} is not Kubo >= 0\.40\.0.*make setup"):
        kubo.find_kubo()


def test_a_stale_pinned_build_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build of another version than go.mod pins (go.mod moved on) counts as missing, so
    `make setup` builds again."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(kubo, "BUILT_BINARY", _version_script(tmp_path / "built-ipfs", "0.41.0"))
    with pytest.raises(kubo.KuboNotFound):
        kubo.find_kubo()


def test_make_setup_left_a_usable_kubo() -> None:
    """What `make setup` leaves: a Kubo on PATH of a supported version, or the pinned build."""
    binary = kubo.find_kubo()
    version = kubo.version_of(binary)
    assert version is not None
    if binary == kubo.BUILT_BINARY:
        assert ".".join(map(str, version)) == kubo.pinned_version()
    else:
        assert version >= kubo.MIN_VERSION


def test_a_js_ipfs_repository_is_moved_aside(
    daemons: EmbeddedServices, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A repository js-ipfs made (no datastore_spec) is moved aside with one log line, never
    deleted, and Kubo starts on a new one."""
    repo = tmp_path / "node" / "ipfs"
    (repo / "blocks").mkdir(parents=True)
    (repo / "config").write_text(json.dumps({"Addresses": {"RPC": "/ip4/127.0.0.1/tcp/5003"}}))
    (repo / "version").write_text("12")
    (repo / "blocks" / "CIQA.data").write_bytes(b"a block js-ipfs kept")
    settings = Settings(data_dir=tmp_path / "node", redis_url=daemons.settings.redis_url)
    with caplog.at_level(logging.WARNING, logger="node.services"), EmbeddedServices(settings):
        assert (repo / "datastore_spec").exists()
    [aside] = [path for path in repo.parent.iterdir() if path.name.startswith(JS_IPFS_ASIDE)]
    assert (aside / "blocks" / "CIQA.data").read_bytes() == b"a block js-ipfs kept"
    moved = [record for record in caplog.records if "another IPFS implementation" in record.getMessage()]
    assert len(moved) == 1 and str(aside) in moved[0].getMessage()


def test_a_kubo_repository_is_kept_across_restarts(own_ipfs: EmbeddedServices) -> None:
    """A repository Kubo made is reused as it is: same peer id, nothing moved aside."""
    data_dir = own_ipfs.settings.data_dir
    peer_id = json.loads((data_dir / "ipfs" / "config").read_text())["Identity"]["PeerID"]
    own_ipfs.stop()
    with EmbeddedServices(Settings(data_dir=data_dir, redis_url=own_ipfs.settings.redis_url)):
        assert json.loads((data_dir / "ipfs" / "config").read_text())["Identity"]["PeerID"] == peer_id
    assert not [path for path in data_dir.iterdir() if path.name.startswith(JS_IPFS_ASIDE)]


@pytest.fixture
async def two_daemon_cluster(
    settings: Settings, own_ipfs: EmbeddedServices, node_client: NodeClient
) -> tuple[Client, Client]:
    """Two nodes sharing one Redis (one cluster), each on a Kubo daemon of its own, with no
    peering configured by hand; each has registered its daemon once."""
    first = await node_client(settings)
    second_dir = settings.data_dir.parent / "second"
    second = await node_client(settings.replace(data_dir=second_dir, ipfs_api=own_ipfs.settings.ipfs_api))
    for client in (first, second):
        await client.app[NODE].peering.refresh()
    return first, second


async def _peering_set(client: Client) -> set[str]:
    answer = await client.app[NODE].ipfs.call("swarm/peering/ls")
    return {str(peer["ID"]) for peer in answer.get("Peers") or []}


async def test_nodes_sharing_a_redis_peer_their_daemons(
    two_daemon_cluster: tuple[Client, Client], settings: Settings, redis_client: aioredis.Redis
) -> None:
    """Each node records its daemon (peer id, loopback swarm addresses) in the registry and
    keeps the other daemon in its own daemon's peering set."""
    first, second = two_daemon_cluster
    peer_ids = [str((await client.app[NODE].ipfs.id())["ID"]) for client in (first, second)]
    registry = await redis_client.hgetall(Keys(settings.redis_prefix).daemons)
    assert {str(field) for field in registry if not str(field).startswith(NODE_FIELD)} == set(peer_ids)
    for peer_id in peer_ids:
        entry = json.loads(registry[peer_id])
        assert entry["addresses"] and all(
            address.endswith(f"/p2p/{peer_id}") for address in entry["addresses"]
        )
    await first.app[NODE].peering.refresh()  # the second registered after the first's round
    assert peer_ids[1] in await _peering_set(first)  # the session's daemon: other tests' too
    assert await _peering_set(second) == {peer_ids[0]}


async def test_content_indexed_by_the_cluster_is_readable_through_any_node(
    two_daemon_cluster: tuple[Client, Client], settings: Settings
) -> None:
    """Bytes uploaded through one node (on its daemon only) are served whole and by range
    through the other node, whose daemon fetches them from the first."""
    first, second = two_daemon_cluster
    token = (settings.data_dir / "admin_token").read_text().strip()
    data = os.urandom(600_000)  # three blocks: more than the small-content path
    uploaded = await upload(first, {"Authorization": f"Bearer {token}"}, data)
    response = await second.get(f"/cache/{uploaded['cid']}")
    assert response.status == 200 and await response.read() == data
    ranged = await second.get(f"/cache/{uploaded['cid']}", headers={"Range": "bytes=300000-300099"})
    assert ranged.status == 206 and await ranged.read() == data[300_000:300_100]


async def test_a_cid_nobody_indexes_is_404_without_asking_ipfs(
    two_daemon_cluster: tuple[Client, Client], own_ipfs: EmbeddedServices
) -> None:
    """A CID that no node of the cluster indexes answers 404 from the index alone: even with
    the node's daemon stopped (asking it would be a 503)."""
    _, second = two_daemon_cluster
    own_ipfs.stop()
    missing = str(CID("base32", 1, "raw", multihash.digest(os.urandom(16), "sha2-256")))
    response = await second.get(f"/cache/{missing}")
    assert response.status == 404, await response.text()


async def test_a_new_repository_is_refilled_from_the_local_cache(
    settings: Settings, node_client: NodeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """After a js-ipfs repository was moved aside, the node adds its local cache again (the
    same CIDs), keeps what is back and drops the index entries whose bytes are gone."""
    node_dir = settings.data_dir
    embedded = Settings(data_dir=node_dir, redis_url=settings.redis_url)
    with EmbeddedServices(embedded) as first:
        client = await node_client(settings.replace(ipfs_api=first.settings.ipfs_api))
        auth = {"Authorization": f"Bearer {(node_dir / 'admin_token').read_text().strip()}"}
        kept = await upload(client, auth, os.urandom(400_000))
        lost = await upload(client, auth, os.urandom(1_000))
        index = client.app[NODE].store.index
        cached = await index.get(kept["content_id"])
        assert cached is not None
        await client.app[NODE].cache.materialize(cached)
        await client.close()
    (node_dir / "ipfs" / "datastore_spec").unlink()  # as js-ipfs left its repositories
    with caplog.at_level(logging.WARNING), EmbeddedServices(embedded) as second:
        assert (node_dir / REFILL_MARKER).exists()
        client = await node_client(settings.replace(ipfs_api=second.settings.ipfs_api))
        await poll_async(lambda: _gone(node_dir / REFILL_MARKER), timeout_s=60)
        response = await client.get(f"/cache/{kept['cid']}")
        assert response.status == 200 and len(await response.read()) == 400_000
        assert (await client.get(f"/cache/{lost['cid']}")).status == 404
        assert await client.app[NODE].ipfs.pin_ls(kept["cid"]) == {kept["cid"]}
    [line] = [record.getMessage() for record in caplog.records if "refilled" in record.getMessage()]
    assert "1 files added again" in line and "1 entries kept" in line and "1 content and 0 step" in line


async def _gone(path: Path) -> bool:
    return not await asyncio.to_thread(path.exists)


def test_a_repository_of_an_older_kubo_is_migrated_at_start(own_ipfs: EmbeddedServices) -> None:
    """A repository at the version an older Kubo left (17, before 0.42) is migrated by the
    daemon at start instead of stopping the node."""
    data_dir = own_ipfs.settings.data_dir
    own_ipfs.stop()
    (data_dir / "ipfs" / "version").write_text("17\n")
    with EmbeddedServices(Settings(data_dir=data_dir, redis_url=own_ipfs.settings.redis_url)):
        assert (data_dir / "ipfs" / "version").read_text().strip() == "18"


async def test_a_daemon_gone_from_the_registry_is_no_longer_kept_peered(
    two_daemon_cluster: tuple[Client, Client], settings: Settings, redis_client: aioredis.Redis
) -> None:
    """A registry entry not refreshed for STALE_S is dropped, and the daemons that kept it in
    their peering set let it go."""
    first, second = two_daemon_cluster
    first_id = str((await first.app[NODE].ipfs.id())["ID"])
    assert first_id in await _peering_set(second)
    await first.app[NODE].peering.close()  # the first node stops refreshing its entry
    daemons = Keys(settings.redis_prefix).daemons
    raw = await redis_client.hget(daemons, first_id)
    assert raw is not None
    entry = json.loads(raw)
    entry["seen"] -= STALE_S + 1
    await redis_client.hset(daemons, first_id, json.dumps(entry))
    await second.app[NODE].peering.refresh()
    assert first_id not in await redis_client.hkeys(daemons)
    assert first_id not in await _peering_set(second)


def test_with_neither_go_nor_kubo_one_line_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m node.kubo` (make setup) with no Kubo and no Go: exit 1 and one line naming
    Go and Kubo's install page."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(kubo, "GO_INSTALL_DIR", str(tmp_path))
    monkeypatch.setattr(kubo, "BUILT_BINARY", tmp_path / "not-built")
    assert kubo.main() == 1
    [line] = capsys.readouterr().err.splitlines()
    assert "Go is not installed" in line and "install Go >= 1.26" in line and "Kubo's `ipfs` on PATH" in line


async def test_a_refill_keeps_what_another_daemon_of_the_cluster_holds(
    settings: Settings, node_client: NodeClient
) -> None:
    """A node refilling a new repository keeps the index entries whose bytes another daemon of
    its cluster holds (it waits until that daemon is connected before it asks)."""
    first = await node_client(settings)  # on the session's daemon
    auth = {"Authorization": f"Bearer {(settings.data_dir / 'admin_token').read_text().strip()}"}
    elsewhere = await upload(first, auth, os.urandom(50_000))
    await first.app[NODE].peering.refresh()
    second_dir = settings.data_dir.parent / "second"
    embedded = Settings(data_dir=second_dir, redis_url=settings.redis_url)
    with EmbeddedServices(embedded):  # the second node's daemon, whose repository is replaced
        pass
    (second_dir / "ipfs" / "datastore_spec").unlink()
    with EmbeddedServices(embedded) as services:
        second = await node_client(settings.replace(data_dir=second_dir, ipfs_api=services.settings.ipfs_api))
        await poll_async(lambda: _gone(second_dir / REFILL_MARKER), timeout_s=60)
        response = await second.get(f"/cache/{elsewhere['cid']}")
        assert response.status == 200 and len(await response.read()) == 50_000


async def test_an_entry_another_node_removed_is_let_go_too(
    two_daemon_cluster: tuple[Client, Client], settings: Settings, redis_client: aioredis.Redis
) -> None:
    """A daemon whose registry entry another node dropped is let go at the next round, though
    this node never saw the entry stale."""
    first, second = two_daemon_cluster
    first_id = str((await first.app[NODE].ipfs.id())["ID"])
    await first.app[NODE].peering.close()
    await redis_client.hdel(Keys(settings.redis_prefix).daemons, first_id)
    await second.app[NODE].peering.refresh()
    assert first_id not in await _peering_set(second)


async def test_a_daemon_that_forgot_its_peering_set_is_given_it_again(
    two_daemon_cluster: tuple[Client, Client],
) -> None:
    """Kubo keeps its peering set in memory only: whatever it lost (a restart under the node)
    is added again at the next round."""
    first, second = two_daemon_cluster
    first_id = str((await first.app[NODE].ipfs.id())["ID"])
    await second.app[NODE].ipfs.peering_rm(first_id)  # as a restarted daemon would have lost it
    await second.app[NODE].peering.refresh()
    assert first_id in await _peering_set(second)
