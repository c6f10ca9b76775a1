"""TLS from Python: with ``MOONCAKE_TLS_CA_FILE`` the package's client reaches a master
started with ``--tls_cert_file/--tls_key_file`` and its ``https://`` metadata server,
and puts and gets; without it ``setup()`` fails with a code, not a hang. Each client
runs in a process of its own: TLS settings are read once per process.
"""

import os
import subprocess
import sys

CLIENT = r"""
import sys
from mooncake.store import MooncakeDistributedStore
s = MooncakeDistributedStore()
rc = s.setup("127.0.0.1", sys.argv[2], 16 << 20, 16 << 20, "tcp", "", sys.argv[1])
print("setup", rc, flush=True)
if rc != 0:
    sys.exit(3)
assert s.put("py-tls", b"hello over tls") == 0
assert s.get("py-tls") == b"hello over tls"
s.close()
print("ok", flush=True)
"""


def run_client(c, env):
    meta = c.metadata.replace("http://", "https://")
    return subprocess.run([sys.executable, "-c", CLIENT, c.master, meta], env=env,
                          capture_output=True, text=True, timeout=120)


def test_setup_put_get_over_tls_and_refused_without_the_ca(make_cluster, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    c = make_cluster(stores=0,
                     master_args=[f"--tls_cert_file={cert}", f"--tls_key_file={key}"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOONCAKE_TLS_")}

    r = run_client(c, dict(env, MOONCAKE_TLS_CA_FILE=str(cert)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok" in r.stdout

    r = run_client(c, env)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "setup 0" not in r.stdout
