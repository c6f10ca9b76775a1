"""Mooncake Store client for Python, backed by the Rust implementation.

``from mooncake.store import MooncakeDistributedStore, ReplicateConfig, SoftPinAction``
works as with the reference package; ``python -m mooncake.mooncake_store_service``
launches the native store daemon. The wheel carries the native programs
(``mooncake_master``, ``mooncake_store``, ``mooncake_cli``,
``mooncake_http_metadata_server``, ``mooncake_client``) and puts them on the venv's
``PATH`` (``mooncake/_launch.py``).
"""

__all__ = ["store", "engine"]
