"""PEP 517 backend for the ``mooncake-rs`` wheel: maturin, plus the daemons.

maturin packages one Rust artifact, the extension module ``mooncake._mooncake``. The
wheel also has to carry the native programs (``mooncake_master``, ``mooncake_store``,
``mooncake_cli``, ``mooncake_http_metadata_server`` and, when the workspace has it,
``mooncake_client``) so that ``pip install`` puts them on the venv's ``PATH`` and
``python -m mooncake.mooncake_store_service`` finds its daemon with nothing else set.

After maturin has built the wheel, this backend runs one ``cargo build --release
--workspace --bin ...`` for those programs and adds stripped copies to the wheel as
``mooncake/bin/<name>`` (with their RECORD lines); the console scripts in
``pyproject.toml`` exec them (``mooncake/_launch.py``). Nothing is written into the
source tree (an editable install, which imports the source tree, gets them in
``python/mooncake/bin``, which git ignores).

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

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
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


def _build_programs(into: Path) -> list[Path]:
    """Builds the programs and puts stripped copies in ``into``; returns their paths."""
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
    into.mkdir(parents=True, exist_ok=True)
    strip = shutil.which("strip")
    out = []
    for name in names:
        src = built.get(name)
        if src is None or not src.is_file():
            raise SystemExit(f"mooncake wheel: cargo reported no executable for {name}")
        dst = into / name
        # Debug line tables make each program ~40 MB; without them ~10 MB. Symbols stay,
        # so a panic's backtrace still names functions.
        if strip:
            subprocess.run([strip, "--strip-debug", "-o", str(dst), str(src)], check=True)
        else:
            shutil.copy2(src, dst)
        dst.chmod(0o755)
        out.append(dst)
    return out


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def _add_to_wheel(wheel: Path, programs: list[Path]) -> None:
    """Rewrites ``wheel`` with ``programs`` as ``mooncake/bin/<name>`` (mode 0755) and
    their lines in the wheel's RECORD."""
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        extra = []
        for prog in programs:
            data = prog.read_bytes()
            info = zipfile.ZipInfo(f"mooncake/bin/{prog.name}", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o100755 << 16)
            info.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(info, data)
            extra.append(_record_line(info.filename, data))
        for item in src.infolist():
            if item.filename.startswith("mooncake/bin/"):
                continue  # a stale copy from a source tree: ours replace it
            data = src.read(item.filename)
            if item.filename == record_name:
                lines = [ln for ln in data.decode().splitlines()
                         if ln and not ln.startswith("mooncake/bin/")]
                data = ("\n".join(lines[:-1] + extra + lines[-1:]) + "\n").encode()
            dst.writestr(item, data)
    os.replace(tmp, wheel)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = maturin.build_wheel(wheel_directory, config_settings, metadata_directory)
    if os.environ.get("MOONCAKE_WHEEL_BINARIES", "1") == "0":
        _log("MOONCAKE_WHEEL_BINARIES=0: the wheel carries no programs")
        return name
    # Staged in a private directory and added to the finished wheel: nothing is written
    # into the source tree, so builds running at the same time cannot see each other's
    # copies, and a later `maturin build` (docker/build.sh) packs none.
    with tempfile.TemporaryDirectory(prefix="mooncake-wheel-") as d:
        programs = _build_programs(Path(d))
        _add_to_wheel(Path(wheel_directory) / name, programs)
    _log("packed " + ", ".join(p.name for p in programs) + " into mooncake/bin")
    return name


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    # An editable install imports python/mooncake itself: the programs go there.
    if os.environ.get("MOONCAKE_WHEEL_BINARIES", "1") != "0":
        _build_programs(BIN_DIR)
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)
