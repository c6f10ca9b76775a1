"""The wheel carries the native programs: after ``pip install crates/mooncake-py`` they
are on the venv's PATH (console scripts that exec the binaries packed in
``mooncake/bin``), and the seed's ``python -m mooncake.mooncake_store_service`` starts
the store with nothing else set (no ``MOONCAKE_BIN_DIR``, no build tree on ``PATH``).

These tests run the installed package, never the build tree."""

import os
import signal
import subprocess
import sys
import sysconfig
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port, http_ok, port_open, wait_until

import mooncake._launch as launch

SCRIPTS = Path(sysconfig.get_path("scripts"))
PROGRAMS = ["mooncake_master", "mooncake_store", "mooncake_cli", "mooncake_http_metadata_server"]


def bare_env(**extra):
    """The environment of a fresh shell: no MOONCAKE_* and no build tree on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOONCAKE_")}
    env["PATH"] = os.pathsep.join([str(SCRIPTS), "/usr/local/bin", "/usr/bin", "/bin"])
    env.update(extra)
    return env


def exe_of(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/exe")


@pytest.mark.parametrize("name", PROGRAMS)
def test_each_program_is_packed_and_on_the_venv_path(name):
    packed = Path(launch.PACKAGE_BIN) / name
    assert packed.is_file() and os.access(packed, os.X_OK), f"{packed} not in the wheel"
    assert packed.read_bytes()[:4] == b"\x7fELF"
    script = SCRIPTS / name
    assert script.is_file() and os.access(script, os.X_OK), f"no {name} in {SCRIPTS}"


@pytest.mark.parametrize("name", PROGRAMS)
def test_help_runs_from_a_shell_with_only_the_venv(name):
    r = subprocess.run([name, "--help"], env=bare_env(), capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert "usage" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr


def test_master_version_names_the_program():
    r = subprocess.run(["mooncake_master", "--version"], env=bare_env(), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("mooncake_master "), r.stdout + r.stderr


def test_mooncake_client_when_the_workspace_builds_it():
    packed = Path(launch.PACKAGE_BIN) / "mooncake_client"
    if not packed.exists():
        pytest.skip("this build of the workspace has no mooncake_client program")
    r = subprocess.run([str(SCRIPTS / "mooncake_client"), "--help"], env=bare_env(),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_a_bad_flag_reaches_the_program_and_its_exit_code_comes_back():
    r = subprocess.run(["mooncake_master", "--rpc_prot", "1"], env=bare_env(),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "--rpc_port" in r.stderr, r.stderr


def test_the_script_becomes_the_daemon(tmp_path):
    """exec, not a child: the PID the caller holds is the master's, and SIGTERM stops it
    cleanly (exit 0), as with the binary started directly."""
    rpc, meta, metrics = free_port(), free_port(), free_port()
    log = tmp_path / "master.log"
    p = subprocess.Popen(
        ["mooncake_master", "--rpc_address", "127.0.0.1", "--rpc_port", str(rpc),
         "--http_metadata_server_host", "127.0.0.1", "--http_metadata_server_port", str(meta),
         "--enable_http_metadata_server", "--metrics_host", "127.0.0.1",
         "--metrics_port", str(metrics)],
        env=bare_env(), stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_until("mooncake_master from the venv", lambda: port_open(rpc), 20, p, log)
        assert exe_of(p.pid) == os.path.join(launch.PACKAGE_BIN, "mooncake_master")
        assert http_ok(f"http://127.0.0.1:{metrics}/metrics")
    finally:
        p.send_signal(signal.SIGTERM)
        code = p.wait(timeout=20)
    assert code == 0, log.read_text()


def test_store_service_starts_with_nothing_set(make_cluster, tmp_path, keyspace):
    """The README's seed command from a shell that has only the venv: the daemon comes
    from the wheel and joins the pool."""
    c = make_cluster(stores=0)
    port = free_port()
    log = tmp_path / "svc.log"
    env = bare_env(MOONCAKE_MASTER=c.master, MOONCAKE_TE_META_DATA_SERVER=c.metadata,
                   MOONCAKE_GLOBAL_SEGMENT_SIZE="32mb", MOONCAKE_LOCAL_HOSTNAME="127.0.0.1",
                   MOONCAKE_PROTOCOL="tcp",
                   # (its segment file stays when it stops: in the test's directory)
                   MOONCAKE_SHM_DIR=str(tmp_path))
    p = subprocess.Popen(
        [sys.executable, "-m", "mooncake.mooncake_store_service", "--port", str(port),
         "--http_host", "127.0.0.1"],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    c.procs.append(p)
    wait_until("store from the wheel", lambda: http_ok(f"http://127.0.0.1:{port}/health"), 30,
               p, log)
    assert exe_of(p.pid) == os.path.join(launch.PACKAGE_BIN, "mooncake_store")
    with urllib.request.urlopen(c.url("/get_all_segments"), timeout=2) as r:
        assert r.read().decode().strip(), "no segment mounted"
    s = c.new_store()
    try:
        k = keyspace("wheel")
        assert s.put(k, b"from the wheel's store") == 0
        assert s.get(k) == b"from the wheel's store"
    finally:
        s.close()


def test_a_wheel_without_programs_says_what_to_set(tmp_path):
    """A wheel built with MOONCAKE_WHEEL_BINARIES=0 has no mooncake/bin: the error names
    the program, where it looked and MOONCAKE_BIN_DIR; the PATH lookup skips the
    scripts themselves (they share the programs' names)."""
    code = (
        "import sys, mooncake._launch as l\n"
        f"l.PACKAGE_BIN = {str(tmp_path / 'nothing')!r}\n"
        "l.exec_program('mooncake_store', ['--port', '1'])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=bare_env(), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "mooncake_store" in r.stderr and "MOONCAKE_BIN_DIR" in r.stderr, r.stderr
