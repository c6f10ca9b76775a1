"""``mooncake.store``: the Mooncake Store client API (CONTRACT §3).

Return conventions: 0 is success, a negative int is a contract error code, byte
results are ``b""`` on failure and buffer results ``None``. Data-path calls never
raise, release the GIL while they wait, and are safe to call from many threads on one
store object.
"""

import logging

from mooncake import _setup_args
from mooncake._mooncake import (
    BufferHandle,
    MooncakeHostMemAllocator,
    NativeStore as _NativeStore,
    ReplicateConfig,
    SoftPinAction,
)

__all__ = [
    "MooncakeDistributedStore",
    "ReplicateConfig",
    "SoftPinAction",
    "BufferHandle",
    "MooncakeHostMemAllocator",
]

logger = logging.getLogger("mooncake.store")

INVALID_PARAMS = -600


def _hostname_beside_engine(local_hostname: str, engine) -> str:
    """SGLang passes the engine's own ``host:port`` as local_hostname. Our client runs
    its own engine (it cannot adopt one), and that port is taken by the engine the
    caller keeps using, so the store registers under the same host and a free port."""
    segment = getattr(engine, "segment_name", None)
    if segment and local_hostname == segment:
        host, sep, port = local_hostname.rpartition(":")
        if sep and port.isdigit():
            return host
    return local_hostname


class MooncakeDistributedStore(_NativeStore):
    """A client of the Mooncake Store; may also contribute memory to the pool.

    Only ``setup()`` is written in Python; every other method is native.
    """

    def setup(self, *args, **kwargs) -> int:
        """Connects to the master and, with ``global_segment_size > 0``, mounts a
        segment of this process's memory into the pool.

        Forms: ``setup(local_hostname, metadata_server, global_segment_size,
        local_buffer_size, protocol, rdma_devices, master_server_addr, engine=None,
        **options)`` or ``setup(config_dict)``. Returns 0 or a negative code.
        """
        try:
            a = _setup_args.parse(args, kwargs)
        except _setup_args.SetupValueError as e:
            logger.error("%s", e)
            return INVALID_PARAMS
        opts = a.options or {}
        if opts.get("enable_ssd_offload"):
            logger.warning("setup(): enable_ssd_offload is not supported; ignored")
        if opts.get("enable_client_http_server"):
            logger.warning("setup(): enable_client_http_server is not supported; ignored")
        code, message = self._setup(
            _hostname_beside_engine(a.local_hostname, a.engine),
            a.metadata_server,
            a.global_segment_size,
            a.local_buffer_size,
            a.protocol,
            a.rdma_devices,
            a.master_server_addr,
        )
        if code != 0:
            logger.error("setup() failed: %s", message)
        return code
