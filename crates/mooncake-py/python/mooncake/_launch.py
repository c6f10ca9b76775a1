"""Console scripts: ``mooncake_master``, ``mooncake_store``, ``mooncake_cli``,
``mooncake_http_metadata_server`` (and ``mooncake_client``) on the venv's ``PATH``.

Each replaces the Python process with the native program of the same name
(``os.execv``), so the PID, the process name and every signal belong to the daemon,
as with the binary run directly. The programs are looked up in
``$MOONCAKE_BIN_DIR`` (a development build, e.g. ``target/release``), then in this
package's ``bin/`` directory, where the wheel puts them, then on ``PATH`` (native
executables only: these scripts share the programs' names and must not find
themselves).
"""

from __future__ import annotations

import os
import shutil
import sys

PACKAGE_BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin")


def _is_native(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def find_binary(name: str) -> str:
    """The path of the native program ``name``; ``FileNotFoundError`` says where it looked."""
    candidates = []
    bin_dir = os.environ.get("MOONCAKE_BIN_DIR")
    if bin_dir:
        candidates.append(os.path.join(bin_dir, name))
    candidates.append(os.path.join(PACKAGE_BIN, name))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        path = os.path.join(directory or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK) and _is_native(path):
            return path
    looked = ", ".join(candidates + ["PATH"])
    raise FileNotFoundError(
        f"cannot find the {name} program (looked in {looked}). The wheel carries it when "
        "built from the repository (pip install crates/mooncake-py); a wheel built with "
        "MOONCAKE_WHEEL_BINARIES=0 does not: set MOONCAKE_BIN_DIR to a directory that "
        "holds it (e.g. target/release after cargo build --release)"
    )


def exec_program(name: str, argv=None) -> None:
    """Replaces this process with ``name`` and ``argv`` (default: this command's arguments)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        binary = find_binary(name)
    except FileNotFoundError as e:
        print(f"{name}: {e}", file=sys.stderr)
        sys.exit(2)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(binary, [binary] + args)


def master() -> None:
    exec_program("mooncake_master")


def store() -> None:
    exec_program("mooncake_store")


def cli() -> None:
    exec_program("mooncake_cli")


def http_metadata_server() -> None:
    exec_program("mooncake_http_metadata_server")


def client() -> None:
    exec_program("mooncake_client")
