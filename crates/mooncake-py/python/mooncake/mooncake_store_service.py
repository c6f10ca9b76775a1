"""``python -m mooncake.mooncake_store_service --port 8080 [--config FILE]``.

Manifests written for the reference start the store role with this module. Here it
replaces itself with the native ``mooncake_store`` daemon, which reads the same
``MOONCAKE_*`` environment and takes the same flags, so the process keeps its PID
(signals from the orchestrator reach the daemon directly).

The daemon ships inside the wheel (``mooncake/bin``); ``$MOONCAKE_BIN_DIR``, when set,
takes precedence (a development build), and ``PATH`` is the last resort.
"""

import sys

from mooncake._launch import exec_program, find_binary

BINARY = "mooncake_store"

__all__ = ["BINARY", "find_binary", "main"]


def main(argv=None) -> None:
    exec_program(BINARY, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
