"""``python -m mooncake.mooncake_store_service --port 8080 [--config FILE]``.

Manifests written for the reference start the store role with this module. Here it
replaces itself with the native ``mooncake_store`` daemon, which reads the same
``MOONCAKE_*`` environment and takes the same flags, so the process keeps its PID
(signals from the orchestrator reach the daemon directly).

The binary is looked up in ``$MOONCAKE_BIN_DIR``, then beside this package
(``mooncake/bin``), then on ``PATH``.
"""

import os
import shutil
import sys

BINARY = "mooncake_store"


def find_binary() -> str:
    candidates = []
    bin_dir = os.environ.get("MOONCAKE_BIN_DIR")
    if bin_dir:
        candidates.append(os.path.join(bin_dir, BINARY))
    candidates.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", BINARY))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    on_path = shutil.which(BINARY)
    if on_path:
        return on_path
    looked = ", ".join(candidates + ["PATH"])
    raise FileNotFoundError(
        f"cannot find the {BINARY} binary (looked in {looked}); "
        "set MOONCAKE_BIN_DIR to the directory that holds it"
    )


def main(argv=None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        binary = find_binary()
    except FileNotFoundError as e:
        print(f"mooncake_store_service: {e}", file=sys.stderr)
        sys.exit(2)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(binary, [binary] + args)


if __name__ == "__main__":
    main()
