"""Authentication and tenants from Python: a master with ``--auth_token_file`` refuses
``setup()`` without a token (a negative code, not a hang), accepts the token of
``MOONCAKE_AUTH_TOKEN_FILE`` / ``MOONCAKE_AUTH_TOKEN``, checks ``tenant_id`` (keyword or
``MOONCAKE_TENANT_ID``) against the token's tenant, keeps each tenant's keys apart, and
reads a tenant's objects through a store's data port after a master restart.
"""

import subprocess
import time
from pathlib import Path

import pytest
from bufs import HostBuf, pattern
from conftest import port_open

from mooncake.store import MooncakeDistributedStore

UNAUTHENTICATED = -1800
PERMISSION_DENIED = -1801

TOKENS = "cluster:tok-cluster-5555555555\nalpha:tok-alpha-0123456789\nbeta:tok-beta-9876543210\n"


@pytest.fixture
def secured(make_cluster, tmp_path, monkeypatch):
    tokens = tmp_path / "master.tokens"
    tokens.write_text(TOKENS)
    files = {}
    for name, token in [("cluster", "tok-cluster-5555555555"), ("alpha", "tok-alpha-0123456789"),
                        ("beta", "tok-beta-9876543210"), ("bad", "wrong-token")]:
        files[name] = tmp_path / name
        files[name].write_text(token + "\n")
    # The store daemon proves the cluster tenant's token (its environment is ours).
    monkeypatch.delenv("MOONCAKE_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("MOONCAKE_TENANT_ID", raising=False)
    monkeypatch.setenv("MOONCAKE_AUTH_TOKEN_FILE", str(files["cluster"]))
    c = make_cluster(stores=1, segment="64mb", via_service_first=False,
                     master_args=[f"--auth_token_file={tokens}"])
    monkeypatch.delenv("MOONCAKE_AUTH_TOKEN_FILE")
    return c, files


def setup_as(c, monkeypatch, token_file=None, **kw):
    if token_file is None:
        monkeypatch.delenv("MOONCAKE_AUTH_TOKEN_FILE", raising=False)
    else:
        monkeypatch.setenv("MOONCAKE_AUTH_TOKEN_FILE", str(token_file))
    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", c.metadata, 0, 16 << 20, "tcp", "", c.master, **kw)
    return s, rc


def test_setup_without_or_with_a_wrong_token_is_refused(secured, monkeypatch):
    c, files = secured
    s, rc = setup_as(c, monkeypatch)
    assert rc == UNAUTHENTICATED
    s, rc = setup_as(c, monkeypatch, files["bad"])
    assert rc == UNAUTHENTICATED
    # An inline token works as well as a file.
    monkeypatch.setenv("MOONCAKE_AUTH_TOKEN", "tok-alpha-0123456789")
    s, rc = setup_as(c, monkeypatch)
    assert rc == 0
    s.close()


def test_tenants_keep_their_own_keys(secured, monkeypatch):
    c, files = secured
    alpha, rc = setup_as(c, monkeypatch, files["alpha"])
    assert rc == 0
    beta, rc = setup_as(c, monkeypatch, files["beta"])
    assert rc == 0
    assert alpha.put("k", b"A") == 0
    assert beta.get("k") == b""
    assert beta.is_exist("k") == 0
    assert beta.put("k", b"B") == 0
    assert alpha.get("k") == b"A"
    assert beta.get("k") == b"B"
    assert alpha.remove("k", force=True) == 0
    assert beta.get("k") == b"B"
    alpha.close()
    beta.close()


def test_tenant_id_must_be_the_tokens(secured, monkeypatch):
    c, files = secured
    s, rc = setup_as(c, monkeypatch, files["alpha"], tenant_id="beta")
    assert rc == PERMISSION_DENIED
    s, rc = setup_as(c, monkeypatch, files["alpha"], tenant_id="alpha")
    assert rc == 0
    s.close()
    # The keyword's default ("default") declares nothing; the environment can.
    monkeypatch.setenv("MOONCAKE_TENANT_ID", "beta")
    s, rc = setup_as(c, monkeypatch, files["alpha"])
    assert rc == PERMISSION_DENIED
    monkeypatch.setenv("MOONCAKE_TENANT_ID", "alpha")
    s, rc = setup_as(c, monkeypatch, files["alpha"], tenant_id="default")
    assert rc == 0
    s.close()


def test_tenants_move_bytes_through_the_store_data_port(secured, monkeypatch):
    # Without same-host mappings every byte crosses the store's data port, which
    # serves a tenant only the allocations the master granted it (docs/security.md).
    c, files = secured
    monkeypatch.setenv("MOONCAKE_DISABLE_SHM", "1")
    alpha, rc = setup_as(c, monkeypatch, files["alpha"])
    assert rc == 0
    beta, rc = setup_as(c, monkeypatch, files["beta"])
    assert rc == 0
    big = bytes(range(256)) * 4096
    assert alpha.put("tcp-k", big) == 0
    assert beta.put("tcp-k", b"B" * 1000) == 0
    assert alpha.get("tcp-k") == big
    assert beta.get("tcp-k") == b"B" * 1000
    keys = [f"tcp-batch-{i}" for i in range(8)]
    values = [bytes([i]) * 200_000 for i in range(8)]
    assert alpha.put_batch(keys, values) == 0
    assert alpha.get_batch(keys) == values
    alpha.close()
    beta.close()


def restart_master(c):
    """kill -9 of the cluster's master, then the same command line again (same ports)."""
    old = c.procs[0]
    args = [a.decode() for a in Path(f"/proc/{old.pid}/cmdline").read_bytes().split(b"\0")[:-1]]
    old.kill()
    old.wait()
    log = c.workdir / "master-restarted.log"
    c.procs[0] = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT)
    rpc = int(c.master.rsplit(":", 1)[1])
    deadline = time.monotonic() + 20
    while not port_open(rpc):
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_a_tenants_reads_through_the_data_port_survive_a_master_restart(
        make_cluster, tmp_path, monkeypatch):
    # The restarted master restores the objects but holds no grant secret for the
    # store's segment until the store mounts again (within a heartbeat); the grants
    # alpha holds from before are refused after that. Every read form still answers
    # the object's bytes (docs/security.md, "Restarts and failover").
    tokens = tmp_path / "master.tokens"
    tokens.write_text(TOKENS)
    files = {}
    for name, token in [("cluster", "tok-cluster-5555555555"), ("alpha", "tok-alpha-0123456789")]:
        files[name] = tmp_path / name
        files[name].write_text(token + "\n")
    monkeypatch.delenv("MOONCAKE_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("MOONCAKE_TENANT_ID", raising=False)
    monkeypatch.setenv("MOONCAKE_AUTH_TOKEN_FILE", str(files["cluster"]))
    c = make_cluster(stores=1, segment="64mb", via_service_first=False,
                     master_args=[f"--auth_token_file={tokens}", "--enable_snapshot=true",
                                  f"--snapshot_backup_dir={tmp_path / 'snap'}",
                                  "--client_ttl", "2"])
    monkeypatch.setenv("MOONCAKE_DISABLE_SHM", "1")
    alpha, rc = setup_as(c, monkeypatch, files["alpha"])
    assert rc == 0
    n = 150_000
    names = ["get", "buffer", "batch-0", "batch-1", "into", "binto", "ranges", "session"]
    values = {k: pattern(i + 1, n) for i, k in enumerate(names)}
    for k, v in values.items():
        assert alpha.put(k, v) == 0
        assert alpha.get(k) == v  # remembered, with this master's grant

    restart_master(c)
    # A client that starts now reads before the store has mounted again.
    fresh, rc = setup_as(c, monkeypatch, files["alpha"])
    assert rc == 0
    for s in (fresh, alpha):
        buf = HostBuf(4 * n)
        assert s.register_buffer(buf.ptr, buf.size) == 0
        # Ranged: bytes 1000..41000 of "ranges" at offset 0 of the buffer.
        res = s.get_into_ranges([buf.ptr], [["ranges"]], [[[0]]], [[[1000]]], [[[40_000]]])
        assert res == [[[40_000]]]
        assert buf.read(0, 40_000) == values["ranges"][1000:41_000]
        assert s.get("get") == values["get"]
        h = s.get_buffer("buffer")
        assert h is not None and bytes(h) == values["buffer"]
        got = s.batch_get_buffer(["batch-0", "batch-1"])
        assert [bytes(x) for x in got] == [values["batch-0"], values["batch-1"]]
        assert s.get_into("into", buf.ptr, n) == n
        assert buf.read(0, n) == values["into"]
        assert s.batch_get_into(["binto"], [buf.ptr + n], [n]) == [n]
        assert buf.read(n, n) == values["binto"]
        assert s.batch_get_session_start(["session"]) == [0]
        res = s.batch_get_into_multi_buffer_ranges(
            ["session"], [[buf.ptr + 2 * n, buf.ptr + 2 * n + 100]], [[100, 5000]], [[n - 100, 0]])
        assert res == [5100]
        assert buf.read(2 * n, 100) == values["session"][n - 100:]
        assert buf.read(2 * n + 100, 5000) == values["session"][:5000]
        assert s.batch_get_session_end(["session"]) == 0
        assert s.unregister_buffer(buf.ptr) == 0
    fresh.close()
    alpha.close()
