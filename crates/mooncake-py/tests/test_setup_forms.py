"""setup() in its three forms (CONTRACT §3) and the calling-form rules SGLang and
LMCache rely on."""

import logging
import time

import pytest
from mooncake.engine import TransferEngine
from mooncake.store import MooncakeDistributedStore

INVALID_PARAMS = -600


def positional(cluster, segment=0, local_buffer=16 << 20):
    return ("127.0.0.1", cluster.metadata, segment, local_buffer, "tcp", "", cluster.master)


def works(s, key):
    assert s.put(key, b"hello") == 0
    assert s.get(key) == b"hello"


def test_positional_with_engine_none_and_sglang_keywords(cluster, keyspace):
    s = MooncakeDistributedStore()
    rc = s.setup(*positional(cluster), None, enable_client_http_server=False,
                 client_http_port=9300, enable_ssd_offload=False, ssd_offload_path="",
                 tenant_id="tenant-a")
    assert rc == 0
    works(s, keyspace("pos"))
    assert s.close() == 0


def test_keyword_form_and_aliases(cluster, keyspace):
    s = MooncakeDistributedStore()
    rc = s.setup(local_hostname="127.0.0.1", metadata_server=cluster.metadata,
                 global_segment_size="0", local_buffer_size="16MB", protocol="TCP",
                 device_name="", master_server_address=cluster.master)
    assert rc == 0
    works(s, keyspace("kw"))
    s.close()


def test_unknown_keyword_is_a_type_error_naming_it(cluster):
    s = MooncakeDistributedStore()
    with pytest.raises(TypeError, match="no_such_option"):
        s.setup(*positional(cluster), None, no_such_option=True)
    with pytest.raises(TypeError, match="at most 8"):
        s.setup(*positional(cluster), None, "ninth")
    with pytest.raises(TypeError, match="local_hostname"):
        s.setup(123, cluster.metadata, 0, 0, "tcp", "", cluster.master)
    with pytest.raises(TypeError, match="multiple values"):
        s.setup(*positional(cluster), protocol="tcp")
    assert s.health_check() == 1


def test_sglang_drops_unsupported_keywords_on_type_error(cluster, keyspace):
    """SGLang retries without every keyword named in the TypeError's message."""
    s = MooncakeDistributedStore()
    kwargs = {"tenant_id": "t", "some_future_option": 1}
    while True:
        try:
            rc = s.setup(*positional(cluster), None, **kwargs)
            break
        except TypeError as e:
            named = [k for k in kwargs if k in str(e)]
            assert named == ["some_future_option"]
            for k in named:
                kwargs.pop(k)
    assert rc == 0
    works(s, keyspace("retry"))
    s.close()


def test_dict_form_with_size_strings(cluster, keyspace):
    s = MooncakeDistributedStore()
    rc = s.setup({
        "local_hostname": "127.0.0.1",
        "metadata_server": cluster.metadata,
        "global_segment_size": "32MB",
        "local_buffer_size": "16mb",
        "protocol": "tcp",
        "rdma_devices": "",
        "master_server_addr": cluster.master,
        "unknown_key_is_ignored": 1,
    })
    assert rc == 0
    host = s.get_hostname()
    assert host.startswith("127.0.0.1:") and host.rsplit(":", 1)[1].isdigit()
    works(s, keyspace("dict"))
    s.close()


def test_dict_form_bad_values_return_invalid_params(cluster, caplog):
    s = MooncakeDistributedStore()
    caplog.set_level(logging.ERROR, logger="mooncake.store")
    assert s.setup({"local_hostname": "127.0.0.1"}) == INVALID_PARAMS
    assert "metadata_server" in caplog.text
    base = {"local_hostname": "127.0.0.1", "metadata_server": cluster.metadata,
            "master_server_addr": cluster.master}
    caplog.clear()
    assert s.setup({**base, "global_segment_size": "50%"}) == INVALID_PARAMS
    assert "global_segment_size" in caplog.text
    caplog.clear()
    assert s.setup({**base, "protocol": "carrier-pigeon"}) == INVALID_PARAMS
    assert "protocol" in caplog.text
    assert s.health_check() == 1


def test_dict_defaults_master_address():
    """Without master_server_addr the dict form targets 127.0.0.1:50051 (the default)."""
    from mooncake import _setup_args

    a = _setup_args.parse(({"local_hostname": "h", "metadata_server": "P2PHANDSHAKE"},), {})
    assert (a.master_server_addr, a.global_segment_size, a.local_buffer_size, a.protocol) == (
        "127.0.0.1:50051", 16 << 20, 16 << 20, "tcp")


def test_setup_twice_is_refused_until_closed(cluster, keyspace):
    s = MooncakeDistributedStore()
    assert s.setup(*positional(cluster)) == 0
    assert s.setup(*positional(cluster)) == INVALID_PARAMS
    assert s.close() == 0
    assert s.setup(*positional(cluster)) == 0
    works(s, keyspace("again"))
    s.close()


def test_master_unreachable_at_setup_is_an_error_code(cluster):
    from conftest import free_port

    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", cluster.metadata, 16 << 20, 16 << 20, "tcp", "",
                 f"127.0.0.1:{free_port()}")
    assert rc < 0
    # A pure client (no segment) too: the master is asked once, not lazily.
    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", cluster.metadata, 0, 16 << 20, "tcp", "",
                 f"127.0.0.1:{free_port()}")
    assert rc == -900


def test_transfer_engine_handed_to_setup(cluster, keyspace):
    te = TransferEngine()
    assert te.get_rpc_port() == -1
    assert te.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") == 0
    port = te.get_rpc_port()
    assert 0 < port < 65536
    assert te.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") == INVALID_PARAMS
    engine = te.get_engine()
    assert engine is not None
    # SGLang names the store after the engine and passes it as the 8th positional.
    s = MooncakeDistributedStore()
    rc = s.setup(f"127.0.0.1:{port}", cluster.metadata, 0, 16 << 20, "tcp", "",
                 cluster.master, engine)
    assert rc == 0
    host = s.get_hostname()
    assert host.startswith("127.0.0.1:") and host != f"127.0.0.1:{port}"
    works(s, keyspace("te"))
    s.close()
    assert te.get_rpc_port() == port  # the caller's engine keeps running


def test_transfer_engine_bad_protocol():
    assert TransferEngine().initialize("127.0.0.1", "P2PHANDSHAKE", "pigeon", "") == INVALID_PARAMS


def tier_capacity(c):
    import urllib.request
    text = urllib.request.urlopen(c.url("/metrics"), timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith("master_tier_capacity_bytes "):
            return float(line.split()[1])
    return 0.0


def test_sglang_ssd_offload_keywords_open_a_tier_that_serves_what_dram_dropped(make_cluster, tmp_path):
    # A master with the tier control plane and no store: this client's segment (8 MiB)
    # is the whole pool, its SSD tier (the keywords SGLang passes) holds the rest.
    c = make_cluster(stores=0, master_args=("--enable_offload=true",))
    (tmp_path / "tier").mkdir()
    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", c.metadata, 8 << 20, 16 << 20, "tcp", "", c.master, None,
                 enable_ssd_offload=True, ssd_offload_path=str(tmp_path / "tier"))
    assert rc == 0
    # The tier calls the master in on its own task right after setup; until the master
    # knows it, what eviction takes is not on disk (docs/tier.md).
    deadline = time.time() + 20
    while tier_capacity(c) == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert tier_capacity(c) > 0, "the master never heard of the tier"
    values = {f"ssd-{i}": bytes([i]) * (1 << 20) for i in range(24)}  # 24 MiB into 8 MiB
    for k, v in values.items():
        for _ in range(50):  # a full pool while earlier objects are still being written
            rc = s.put(k, v)
            if rc != -200:
                break
            time.sleep(0.1)
        assert rc == 0, k
    assert any(p.is_file() for p in (tmp_path / "tier").iterdir()), "the tier wrote nothing"
    deadline = time.time() + 30
    while True:
        got = {k: s.get(k) for k in values}
        if all(got[k] == v for k, v in values.items()) or time.time() > deadline:
            break
        time.sleep(0.5)
    missing = [k for k, v in values.items() if got[k] != v]
    assert not missing, f"not read back byte for byte: {missing}"
    assert s.close() == 0


def test_ssd_offload_to_a_missing_directory_fails_setup(make_cluster, tmp_path):
    c = make_cluster(stores=0, master_args=("--enable_offload=true",))
    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", c.metadata, 8 << 20, 16 << 20, "tcp", "", c.master, None,
                 enable_ssd_offload=True, ssd_offload_path=str(tmp_path / "missing"))
    assert rc == -600
    # Nothing half set up: the same object sets up again once the directory exists.
    (tmp_path / "missing").mkdir()
    assert s.setup("127.0.0.1", c.metadata, 8 << 20, 16 << 20, "tcp", "", c.master, None,
                   enable_ssd_offload=True, ssd_offload_path=str(tmp_path / "missing")) == 0
    assert s.close() == 0


def master_metric(c, name):
    import urllib.request
    text = urllib.request.urlopen(c.url("/metrics"), timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def mediums(c, key):
    import json
    import urllib.request
    try:
        body = urllib.request.urlopen(c.url(f"/query_key?key={key}"), timeout=5).read()
    except Exception:
        return []
    return [r["medium"] for r in json.loads(body).get("replicas", [])]


def test_offload_on_evict_demotes_and_a_disk_hit_is_promoted_back(make_cluster, tmp_path):
    # Nothing goes to disk until eviction takes it; a get of a demoted object is
    # served from disk and brings it back into this client's DRAM.
    c = make_cluster(stores=0, master_args=("--enable_offload=true", "--offload_on_evict=true",
                                            "--promotion_on_hit=true"))
    (tmp_path / "tier").mkdir()
    s = MooncakeDistributedStore()
    assert s.setup("127.0.0.1", c.metadata, 8 << 20, 16 << 20, "tcp", "", c.master, None,
                   enable_ssd_offload=True, ssd_offload_path=str(tmp_path / "tier")) == 0
    deadline = time.time() + 20
    while tier_capacity(c) == 0 and time.time() < deadline:
        time.sleep(0.05)
    values = {f"dem-{i}": bytes([i]) * (1 << 20) for i in range(16)}  # 16 MiB into 8 MiB
    for i, (k, v) in enumerate(values.items()):
        assert s.put(k, v) == 0, k
        if i == 3:  # 4 MiB of 8: below the high watermark, nothing written
            assert master_metric(c, "master_tier_persists_started_total") == 0
        deadline = time.time() + 20
        while master_metric(c, "master_tier_demoting_bytes") > 0 and time.time() < deadline:
            time.sleep(0.02)
    assert master_metric(c, "master_tier_demotions_total") >= 1
    # (A put that finds the pool full before the round's demotion freed memory
    # demotes its own victims and waits for them: docs/tier.md, "When demotion lags";
    # only a full tier drops, counted.)
    drops = master_metric(c, "master_tier_evict_drops_total")
    on_disk = [k for k in values if mediums(c, k) == ["disk"]]
    assert on_disk, "nothing was demoted"
    k = on_disk[0]
    assert s.get(k) == values[k]  # from disk
    deadline = time.time() + 20
    # (While the copy runs, /query_key already lists the memory replica being
    # written; the promotion counts when it is complete.)
    while master_metric(c, "master_tier_promotions_total") < 1 and time.time() < deadline:
        time.sleep(0.05)
    assert master_metric(c, "master_tier_promotions_total") == 1
    assert sorted(mediums(c, k)) == ["disk", "memory"]
    assert s.get(k) == values[k]  # from DRAM
    # Every object reads back byte for byte, unless counted as dropped. (A
    # promotion's memory can make the round demote another object, which misses
    # for the moment its write takes: docs/tier.md, "Not done yet".)
    unread = 0
    for k, v in values.items():
        deadline = time.time() + 5
        got = s.get(k)
        while got != v and time.time() < deadline:
            assert not got, f"wrong bytes for {k}"  # a miss is empty, never other bytes
            time.sleep(0.05)
            got = s.get(k)
        unread += got != v
    assert unread <= master_metric(c, "master_tier_evict_drops_total")
    assert drops <= 2, f"{drops} dropped by a paced writer"
    assert s.close() == 0
