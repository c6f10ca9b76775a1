"""Authentication and tenants from Python: a master with ``--auth_token_file`` refuses
``setup()`` without a token (a negative code, not a hang), accepts the token of
``MOONCAKE_AUTH_TOKEN_FILE`` / ``MOONCAKE_AUTH_TOKEN``, checks ``tenant_id`` (keyword or
``MOONCAKE_TENANT_ID``) against the token's tenant, and keeps each tenant's keys apart.
"""

import pytest

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
