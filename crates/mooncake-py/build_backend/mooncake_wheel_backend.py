"""PEP 517 backend for the ``mooncake-rs`` wheel: maturin, plus the daemons.

maturin packages one Rust artifact, the extension module ``mooncake._mooncake``. The
wheel also has to carry the native programs (``mooncake_master``, ``mooncake_store``,
``mooncake_cli``, ``mooncake_http_metadata_server`` and, when the workspace has it,
``mooncake_client``) so that ``pip install`` puts them on the venv's ``PATH`` and
``python -m mooncake.mooncake_store_service`` finds its daemon with nothing else set.

Before handing over to maturin this backend runs one ``cargo build --release
--workspace --bin ...`` for those programs and copies them into
``python/mooncake/bin`` (not tracked by git, removed again once the wheel is built),
which maturin packs as package data; the console scripts in ``pyproject.toml`` exec them (``mooncake/_launch.py``).

Why a build step and not the daemons linked into the extension module: the programs
stay the same binaries as ``cargo build`` and the container image produce (own
process name and PID, their own allocator, signals straight to the daemon), and the
extension that every inference process imports stays the client only. The build
shares the workspace's ``target/`` directory and selects the whole workspace, so the
features match ``cargo build --release --workspace --bins``: after that build (which
``scripts/test.sh`` runs first) this step compiles nothing.

``MOONCAKE_WHEEL_BINARIES=0`` skips the step (a wheel with the client only).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import maturin
from maturin import (  # noqa: F401  (re-exported PEP 517 hooks)
    build_sdist,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_wheel,
)

try:  # optional hooks, present in every maturin this project accepts
    from maturin import get_requires_for_build_editable  # noqa: F401
    from maturin import prepare_metadata_for_build_editable  # noqa: F401
except ImportError:  # pragma: no cover
    pass

# The programs the wheel carries. A name the workspace does not (yet) build is skipped.
PROGRAMS = (
    "mooncake_master",
    "mooncake_store",
    "mooncake_cli",
    "mooncake_http_metadata_server",
    "mooncake_client",
)

HERE = Path(__file__).resolve().parent.parent  # crates/mooncake-py
BIN_DIR = HERE / "python" / "mooncake" / "bin"


def _log(msg: str) -> None:
    print(f"mooncake wheel: {msg}", file=sys.stderr, flush=True)


def _cargo() -> str:
    return os.environ.get("CARGO", "cargo")


def _workspace_bins() -> tuple[Path, list[str]]:
    """The workspace manifest and which of ``PROGRAMS`` it has a bin target for."""
    out = subprocess.run(
        [_cargo(), "metadata", "--format-version", "1", "--no-deps"],
        cwd=HERE,
        check=True,
        stdout=subprocess.PIPE,
    ).stdout
    meta = json.loads(out)
    root = Path(meta["workspace_root"])
    have = {
        t["name"]
        for p in meta["packages"]
        for t in p["targets"]
        if "bin" in t["kind"]
    }
    return root / "Cargo.toml", [p for p in PROGRAMS if p in have]


def _build_programs() -> None:
    if os.environ.get("MOONCAKE_WHEEL_BINARIES", "1") == "0":
        _log("MOONCAKE_WHEEL_BINARIES=0: the wheel carries no programs")
        shutil.rmtree(BIN_DIR, ignore_errors=True)
        return
    manifest, names = _workspace_bins()
    cmd = [_cargo(), "build", "--release", "--workspace", "--manifest-path", str(manifest),
           "--message-format=json-render-diagnostics"]
    for name in names:
        cmd += ["--bin", name]
    _log("building " + ", ".join(names))
    proc = subprocess.run(cmd, cwd=HERE, stdout=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"mooncake wheel: `{' '.join(cmd)}` failed (exit {proc.returncode})")
    built = {}
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            built[msg["target"]["name"]] = Path(msg["executable"])
    shutil.rmtree(BIN_DIR, ignore_errors=True)
    BIN_DIR.mkdir(parents=True)
    strip = shutil.which("strip")
    for name in names:
        src = built.get(name)
        if src is None or not src.is_file():
            raise SystemExit(f"mooncake wheel: cargo reported no executable for {name}")
        dst = BIN_DIR / name
        # Debug line tables make each program ~40 MB; without them ~10 MB. Symbols stay,
        # so a panic's backtrace still names functions.
        if strip:
            subprocess.run([strip, "--strip-debug", "-o", str(dst), str(src)], check=True)
        else:
            shutil.copy2(src, dst)
        dst.chmod(0o755)
    _log(f"packed {', '.join(names)} into {BIN_DIR}")


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _build_programs()
    try:
        return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)
    finally:
        # Not left in the source tree, where a later `maturin build` (docker/build.sh)
        # would pack these copies instead of the programs of its own build.
        shutil.rmtree(BIN_DIR, ignore_errors=True)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _build_programs()
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)
