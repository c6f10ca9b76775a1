"""Mooncake Store client for Python, backed by the Rust implementation.

``from mooncake.store import MooncakeDistributedStore, ReplicateConfig, SoftPinAction``
works as with the reference package; ``python -m mooncake.mooncake_store_service``
launches the native store daemon.
"""

__all__ = ["store", "engine"]
