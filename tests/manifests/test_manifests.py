"""Every role of the deployment manifests, started as written.

The manifests in docker/ are parsed, and each role's container command and environment
are run on this machine with the substitutions a cluster would make, mapped to
loopback: `$(POD_IP)` -> 127.0.0.1, service names -> 127.0.0.1, container ports ->
free loopback ports, and the store's 50gb segment -> 64mb (memory). Nothing else is
changed, so a manifest that drifts from the binaries or the Python package fails here.

The SGLang role cannot run here (no GPU, no SGLang); its environment is checked by doing
what SGLang's mooncake backend does with it: setup from MOONCAKE_* and the warm-up put/get.
"""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from free_ports import free_port, free_ports  # noqa: E402
BIN_DIR = Path(os.environ.get("MOONCAKE_BIN_DIR", ROOT / "target" / "release"))
SEGMENT = "64mb"
SEGMENT_BYTES = 64 << 20
MANIFESTS = [
    ("docker/rbg/mooncake-rbg.yaml", "s-sglang-demo-mooncake-master"),
    ("docker/k8s/mooncake.yaml", "mooncake-master"),
]


def containers(path):
    """(role name, replicas, container spec) for every pod template in the file."""
    out = []
    for doc in yaml.safe_load_all((ROOT / path).read_text()):
        if not doc:
            continue
        if doc["kind"] == "RoleBasedGroup":
            for role in doc["spec"]["roles"]:
                for c in role["template"]["spec"]["containers"]:
                    out.append((role["name"], role.get("replicas", 1), c))
        elif doc["kind"] in ("Deployment", "StatefulSet"):
            for c in doc["spec"]["template"]["spec"]["containers"]:
                out.append((doc["metadata"]["name"], doc["spec"].get("replicas", 1), c))
    return out


def role_kind(name):
    if "master" in name:
        return "master"
    if "store" in name:
        return "store"
    if "sglang" in name:
        return "engine"
    return name


def expand(value, env):
    """Kubernetes' $(VAR) expansion in command and env values."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def container_env(spec):
    env = {}
    for e in spec.get("env", []):
        if "valueFrom" in e:
            assert e["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP", e
            env[e["name"]] = "127.0.0.1"
        else:
            env[e["name"]] = expand(str(e.get("value", "")), env)
    return env


class Cluster:
    def __init__(self, service):
        self.service = service
        self.master_ports = dict(zip((50051, 8080, 9003), free_ports(3)))
        self.procs = []

    def map_service(self, value):
        def sub(m):
            return "127.0.0.1:%d" % self.master_ports[int(m.group(1))]

        return re.sub(re.escape(self.service) + r":(\d+)", sub, value)

    def start(self, spec, ports, extra_env=None):
        env = container_env(spec)
        env = {k: self.map_service(v) for k, v in env.items()}
        if "MOONCAKE_GLOBAL_SEGMENT_SIZE" in env and env["MOONCAKE_GLOBAL_SEGMENT_SIZE"] not in ("0", ""):
            env["MOONCAKE_GLOBAL_SEGMENT_SIZE"] = SEGMENT
        cmd = [expand(part, env) for part in spec["command"]]
        cmd = [re.sub(r"\b(50051|8080|9003)\b", lambda m: str(ports.get(int(m.group(1)), m.group(1))), p) for p in cmd]
        full_env = dict(os.environ)
        full_env.update(env)
        full_env.update(extra_env or {})
        full_env["PATH"] = "%s:%s:%s" % (BIN_DIR, Path(sys.executable).parent, os.environ.get("PATH", ""))
        full_env["MOONCAKE_BIN_DIR"] = str(BIN_DIR)
        p = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p, env

    def stop(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return None, ""


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def probe_url(spec, ports):
    probe = spec["readinessProbe"]["httpGet"]
    return "http://127.0.0.1:%d%s" % (ports[probe["port"]], probe["path"])


@pytest.mark.parametrize("path,service", MANIFESTS)
def test_manifest_roles_start_as_written(path, service):
    roles = containers(path)
    kinds = {role_kind(name) for name, _, _ in roles}
    assert {"master", "store", "engine"} <= kinds, kinds
    cluster = Cluster(service)
    try:
        (master_spec,) = [c for n, _, c in roles if role_kind(n) == "master"]
        mp = cluster.master_ports
        master, _ = cluster.start(master_spec, mp)
        url = probe_url(master_spec, mp)
        wait_for(lambda: http_status(url)[0] == 200, 20, "master readiness " + url)

        stores = [(c, r) for n, r, c in roles if role_kind(n) == "store"]
        (store_spec, replicas) = stores[0]
        assert replicas == 3
        store_probes = []
        for _ in range(replicas):
            ports = {8080: free_port()}
            cluster.start(store_spec, ports)
            store_probes.append(probe_url(store_spec, ports))
        for u in store_probes:
            wait_for(lambda: http_status(u)[0] == 200, 30, "store readiness " + u)

        def capacity():
            _, text = http_status("http://127.0.0.1:%d/metrics" % mp[9003])
            m = re.search(r"^master_total_capacity_bytes\s+(\S+)", text, re.M)
            return int(float(m.group(1))) if m else None

        wait_for(lambda: capacity() == replicas * SEGMENT_BYTES, 20, "3 segments mounted")

        (engine_spec,) = [c for n, _, c in roles if role_kind(n) == "engine"]
        command = " ".join(engine_spec["command"])
        assert "--hicache-storage-backend mooncake" in command
        env = {k: cluster.map_service(v) for k, v in container_env(engine_spec).items()}
        engine = subprocess.run(
            [sys.executable, "-c", ENGINE_SNIPPET],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert engine.returncode == 0, engine.stdout + engine.stderr
        assert "warmup ok" in engine.stdout

        # docs/kubernetes.md step 6: the CLI in the master's pod, against 127.0.0.1:50051.
        cli = [str(BIN_DIR / "mooncake_cli"), "--master", "127.0.0.1:%d" % mp[50051]]
        seg = subprocess.run(cli + ["segments"], capture_output=True, text=True, timeout=30)
        assert seg.returncode == 0, seg.stderr
        lines = seg.stdout.strip().splitlines()
        assert lines[0].split()[:4] == ["OWNER", "USED", "TOTAL", "USE%"], seg.stdout
        assert len(lines) == 1 + replicas, seg.stdout
        st = subprocess.run(cli + ["stats"], capture_output=True, text=True, timeout=30)
        assert st.returncode == 0, st.stderr
        assert re.search(r"^segments:\s+%d$" % replicas, st.stdout, re.M), st.stdout
    finally:
        cluster.stop()
    # docs/kubernetes.md step 5: the line `kubectl logs` of the master shows.
    log = master.stdout.read().decode(errors="replace")
    assert re.search(r"Storage: \S+ \S+ / \S+ \S+ \(\d+\.\d+%\) \| Keys: \d+ \(soft-pinned: \d+\)", log), log[-3000:]


# What SGLang's mooncake HiCache backend does at start-up with the role's environment.
ENGINE_SNIPPET = r"""
import os, uuid
from mooncake.store import MooncakeDistributedStore
s = MooncakeDistributedStore()
rc = s.setup("localhost", os.environ["MOONCAKE_TE_META_DATA_SERVER"],
             int(os.environ["MOONCAKE_GLOBAL_SEGMENT_SIZE"]), int(os.environ["MOONCAKE_LOCAL_BUFFER_SIZE"]),
             os.environ["MOONCAKE_PROTOCOL"], os.environ["MOONCAKE_DEVICE"], os.environ["MOONCAKE_MASTER"])
assert rc == 0, rc
key = "sglang_mooncake_store_warmup_key" + uuid.uuid4().hex
value = os.urandom(4096)
assert s.put(key, value) == 0
assert s.is_exist(key) == 1
assert s.get(key) == value
s.close()
print("warmup ok")
"""
