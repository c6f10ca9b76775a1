"""The standalone variant of the SGLang role (docker/rbg/mooncake-rbg-standalone.yaml),
started as written: the master role of mooncake-rbg.yaml, then the pod's
`mooncake_client` sidecar with its command mapped to loopback (service name -> 127.0.0.1,
its ports -> free ones, the 32 GB segment -> 64 MB), then what SGLang's mooncake
backend does in standalone mode with the engine container's environment
(MOONCAKE_STANDALONE_STORAGE, MOONCAKE_CLIENT): a host pool from
MooncakeHostMemAllocator, setup_dummy against MOONCAKE_CLIENT, the warm-up put/get and a
page batch through the pool."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from test_manifests import (BIN_DIR, ROOT, Cluster, container_env, containers, expand,
                            free_port, http_status, probe_url, role_kind, wait_for)

STANDALONE = "docker/rbg/mooncake-rbg-standalone.yaml"
SERVICE = "s-sglang-demo-mooncake-master"


def pod_containers():
    (doc,) = [d for d in yaml.safe_load_all((ROOT / STANDALONE).read_text()) if d]
    (role,) = doc["spec"]["roles"]
    spec = role["template"]["spec"]
    mounts = {c["name"]: {m["name"] for m in c.get("volumeMounts", [])} for c in spec["containers"]}
    return {c["name"]: c for c in spec["containers"]}, mounts, spec["volumes"]


def test_the_sidecar_and_the_engine_share_what_they_need():
    cs, mounts, volumes = pod_containers()
    assert set(cs) == {"mooncake-client", "sglang"}
    # /dev/shm is one volume for both (memory-backed).
    assert "dshm" in mounts["mooncake-client"] and "dshm" in mounts["sglang"]
    (dshm,) = [v for v in volumes if v["name"] == "dshm"]
    assert dshm["emptyDir"]["medium"] == "Memory"
    env = container_env(cs["sglang"])
    assert env["MOONCAKE_STANDALONE_STORAGE"] == "1"
    sidecar_port = cs["mooncake-client"]["ports"][0]["containerPort"]
    assert env["MOONCAKE_CLIENT"] == f"127.0.0.1:{sidecar_port}"
    assert f"--port={sidecar_port}" in " ".join(cs["mooncake-client"]["command"])


def test_standalone_role_starts_as_written():
    (master_spec,) = [c for n, _, c in containers("docker/rbg/mooncake-rbg.yaml")
                      if role_kind(n) == "master"]
    cs, _, _ = pod_containers()
    cluster = Cluster(SERVICE)
    try:
        mp = cluster.master_ports
        cluster.start(master_spec, mp)
        url = probe_url(master_spec, mp)
        wait_for(lambda: http_status(url)[0] == 200, 20, "master readiness " + url)

        sidecar = cs["mooncake-client"]
        port, http_port = free_port(), free_port()
        env = container_env(sidecar)
        cmd = [cluster.map_service(expand(p, env)) for p in sidecar["command"]]
        cmd = [re.sub(r"--port=50052\b", f"--port={port}", p).replace("'32 GB'", "'64 MB'")
               .replace("--http_port=9300", f"--http_port={http_port}") for p in cmd]
        full_env = {**os.environ, **env,
                    "PATH": f"{BIN_DIR}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        p = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
        cluster.procs.append(p)

        def listening():
            import socket
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        wait_for(listening, 30, "the mooncake_client sidecar on its port")
        # The sidecar's readiness probe, as the manifest writes it.
        ready = probe_url(sidecar, {9300: http_port})
        wait_for(lambda: http_status(ready)[0] == 200, 30, "sidecar readiness " + ready)
        status, metrics = http_status(ready.replace("/health", "/metrics"))
        assert status == 200 and "client_mounted 1" in metrics

        engine_env = {k: cluster.map_service(v) for k, v in container_env(cs["sglang"]).items()}
        engine_env["MOONCAKE_CLIENT"] = engine_env["MOONCAKE_CLIENT"].replace(":50052", f":{port}")
        engine = subprocess.run([sys.executable, "-c", ENGINE_SNIPPET],
                                env={**os.environ, **engine_env}, capture_output=True, text=True,
                                timeout=60)
        assert engine.returncode == 0, engine.stdout + engine.stderr
        assert "standalone ok" in engine.stdout
    finally:
        cluster.stop()


# SGLang's mooncake HiCache backend in standalone mode, with the role's environment.
ENGINE_SNIPPET = r"""
import ctypes, os, uuid
from mooncake.store import MooncakeDistributedStore, MooncakeHostMemAllocator
assert os.environ["MOONCAKE_STANDALONE_STORAGE"] == "1"
pool_bytes = 16 << 20
pool = MooncakeHostMemAllocator().alloc(pool_bytes)
s = MooncakeDistributedStore()
assert s.setup_dummy(pool_bytes, 0, os.environ["MOONCAKE_CLIENT"]) == 0
key = "sglang_mooncake_store_warmup_key" + uuid.uuid4().hex
value = os.urandom(4096)
assert s.put(key, value) == 0 and s.is_exist(key) == 1 and s.get(key) == value
page = 1 << 20
keys = [uuid.uuid4().hex for _ in range(8)]
ptrs = [pool + i * page for i in range(8)]
for i, p in enumerate(ptrs):
    ctypes.memset(p, i + 1, page)
assert s.batch_is_exist(keys) == [0] * 8
assert s.batch_put_from(keys, ptrs, [page] * 8) == [0] * 8
ctypes.memset(pool, 0, 8 * page)
assert s.batch_get_into(keys, ptrs, [page] * 8) == [page] * 8
assert all(ctypes.string_at(p, page) == bytes([i + 1]) * page for i, p in enumerate(ptrs))
s.close()
print("standalone ok")
"""
