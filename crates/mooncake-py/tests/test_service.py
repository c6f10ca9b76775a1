"""``python -m mooncake.mooncake_store_service``: the seed's command line starts the
native store daemon with the same environment and flags."""

import json
import os
import subprocess
import sys
import urllib.request

from conftest import BIN_DIR, free_port, http_ok, wait_until


def segments(cluster):
    with urllib.request.urlopen(cluster.url("/get_all_segments"), timeout=2) as r:
        return [line for line in r.read().decode().splitlines() if line.strip()]


def test_cluster_store_started_by_the_module_serves_data(cluster, store, keyspace):
    # store 0 of the session cluster was started through the module
    assert http_ok(f"http://127.0.0.1:{cluster.store_ports[0]}/health")
    assert len(segments(cluster)) >= 2
    k = keyspace("svc")
    assert store.put(k, b"x" * 1000) == 0
    assert store.get(k) == b"x" * 1000


def test_config_file_form(make_cluster, tmp_path, keyspace):
    c = make_cluster(stores=0)
    cfg = tmp_path / "store.json"
    cfg.write_text(json.dumps({
        "local_hostname": "127.0.0.1",
        "metadata_server": c.metadata,
        "global_segment_size": "32mb",
        "local_buffer_size": "0",
        "protocol": "tcp",
        "device_name": "",
        "master_server_address": c.master,
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOONCAKE_")}
    env["MOONCAKE_BIN_DIR"] = str(BIN_DIR)
    # The store keeps its segment file when it stops (for its next run): in the test's
    # directory, not in /dev/shm for good.
    env["MOONCAKE_SHM_DIR"] = str(tmp_path)
    port = free_port()
    log = tmp_path / "svc.log"
    p = subprocess.Popen(
        [sys.executable, "-m", "mooncake.mooncake_store_service", "--config", str(cfg),
         "--port", str(port), "--http_host", "127.0.0.1"],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    c.procs.append(p)
    wait_until("store via --config", lambda: http_ok(f"http://127.0.0.1:{port}/health"),
               30, p, log)
    wait_until("segment mounted", lambda: len(segments(c)) == 1, 10, p, log)
    s = c.new_store()
    try:
        k = keyspace("cfg")
        assert s.put(k, b"from config") == 0
        assert s.get(k) == b"from config"
    finally:
        s.close()


def test_bin_dir_takes_precedence_over_the_wheel(tmp_path):
    """MOONCAKE_BIN_DIR (a development build) wins over the programs in the wheel."""
    fake = tmp_path / "mooncake_store"
    fake.write_text("#!/bin/sh\necho fake store \"$@\"\n")
    fake.chmod(0o755)
    env = dict(os.environ, MOONCAKE_BIN_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "mooncake.mooncake_store_service", "--port", "1"],
                       env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "fake store --port 1", r.stdout + r.stderr
