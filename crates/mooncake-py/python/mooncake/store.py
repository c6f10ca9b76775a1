"""``mooncake.store``: the Mooncake Store client API (CONTRACT §3).

Return conventions: 0 is success, a negative int is a contract error code, byte
results are ``b""`` on failure and buffer results ``None``. Data-path calls never
raise, release the GIL while they wait, and are safe to call from many threads on one
store object.
"""

import enum
import logging
from typing import Optional

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
    "ReplicaStatus",
    "ReplicaDescriptor",
    "MemoryDescriptor",
    "Descriptor",
    "TaskType",
    "TaskStatus",
    "QueryTaskResponse",
]

logger = logging.getLogger("mooncake.store")

INVALID_PARAMS = -600
# The reference's NOT_SUPPORTED: a call this store refuses by design.
NOT_SUPPORTED = -1012


def _declared_tenant(tenant_id) -> Optional[str]:
    """The tenant ``setup(tenant_id=...)`` declares, or None (the keyword left at its
    default ``"default"``, or empty): then ``MOONCAKE_TENANT_ID`` decides."""
    if not isinstance(tenant_id, str) or tenant_id.strip() in ("", "default"):
        return None
    return tenant_id.strip()


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


class ReplicaStatus(enum.IntEnum):
    """A replica's state, with the reference's names. Descriptions list complete
    replicas only."""

    UNDEFINED = 0
    INITIALIZED = 1
    PROCESSING = 2
    COMPLETE = 3
    REMOVED = 4
    FAILED = 5


class Descriptor:
    """Where a memory replica's bytes are: ``size`` bytes at ``buffer_address`` in the
    address space of the segment owner reached at ``transport_endpoint``."""

    __slots__ = ("size", "buffer_address", "transport_endpoint", "segment_name")

    def __init__(self, size=0, buffer_address=0, transport_endpoint="", segment_name=""):
        self.size = size
        self.buffer_address = buffer_address
        self.transport_endpoint = transport_endpoint
        self.segment_name = segment_name

    def __repr__(self):
        return (f"<Descriptor size={self.size} buffer_address={self.buffer_address} "
                f"transport_endpoint={self.transport_endpoint}>")


class MemoryDescriptor:
    __slots__ = ("buffer_descriptor",)

    def __init__(self, buffer_descriptor: Descriptor):
        self.buffer_descriptor = buffer_descriptor


class ReplicaDescriptor:
    """One replica of an object (``get_replica_desc``). Every replica here is in
    memory; there is no disk tier."""

    __slots__ = ("status", "_memory")

    def __init__(self, memory: MemoryDescriptor, status=ReplicaStatus.COMPLETE):
        self.status = status
        self._memory = memory

    def is_memory_replica(self) -> bool:
        return True

    def is_disk_replica(self) -> bool:
        return False

    def is_local_disk_replica(self) -> bool:
        return False

    def get_memory_descriptor(self) -> MemoryDescriptor:
        return self._memory

    def get_disk_descriptor(self):
        raise RuntimeError("not a disk replica: this store keeps replicas in memory only")

    def __repr__(self):
        d = self._memory.buffer_descriptor
        return f"ReplicaDescriptor(status={self.status.name}, segment={d.segment_name!r}, size={d.size})"


class TaskType(enum.IntEnum):
    """What a task does (``query_task``), with the reference's names."""

    REPLICA_COPY = 0
    REPLICA_MOVE = 1


class TaskStatus(enum.IntEnum):
    """Where a task is: PENDING (the copy not handed out yet), PROCESSING (the source
    segment's owner is copying), SUCCESS, FAILED (``message`` says why; the object is
    left as it was)."""

    PENDING = 0
    PROCESSING = 1
    SUCCESS = 2
    FAILED = 3


class QueryTaskResponse:
    """A task's state, as ``query_task`` answers it (the reference's fields)."""

    __slots__ = ("id", "type", "status", "created_at_ms_epoch",
                 "last_updated_at_ms_epoch", "assigned_client", "message")

    def __init__(self, id=(0, 0), type=TaskType.REPLICA_COPY, status=TaskStatus.PENDING,
                 created_at_ms_epoch=0, last_updated_at_ms_epoch=0, assigned_client="",
                 message=""):
        self.id = id
        self.type = type
        self.status = status
        self.created_at_ms_epoch = created_at_ms_epoch
        self.last_updated_at_ms_epoch = last_updated_at_ms_epoch
        self.assigned_client = assigned_client
        self.message = message

    def __repr__(self):
        return (f"QueryTaskResponse(id={self.id}, type={int(self.type)}, "
                f"status={int(self.status)}, created_at={self.created_at_ms_epoch}, "
                f"last_updated_at={self.last_updated_at_ms_epoch}, "
                f"assigned_client={self.assigned_client}, message=\"{self.message}\")")


def _task_id(task_id):
    """A task id as two ints, from the ``(high, low)`` pair the create calls return."""
    try:
        high, low = (int(x) for x in task_id)
    except (TypeError, ValueError):
        return None
    if not (0 <= high < 2**64 and 0 <= low < 2**64):
        return None
    return high, low


def _replicas(native_reps):
    return [
        ReplicaDescriptor(MemoryDescriptor(Descriptor(size, addr, endpoint, segment)))
        for (segment, endpoint, addr, size) in native_reps
    ]


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
            # SGLang's SSD tier keywords; left out, the MOONCAKE_OFFLOAD_* environment decides.
            ssd_offload_path=opts.get("ssd_offload_path") or None,
            enable_ssd_offload=True if opts.get("enable_ssd_offload") else None,
            # The tenant this client declares; "default" (the keyword's default) is
            # none, and MOONCAKE_TENANT_ID decides.
            tenant_id=_declared_tenant(opts.get("tenant_id")),
        )
        if code != 0:
            logger.error("setup() failed: %s", message)
        return code

    def get_replica_desc(self, key: str) -> list:
        """The complete replicas of ``key`` (``[]`` when it is missing, being written
        or the store is not set up). Like a read, it grants the object a lease."""
        code, _size, reps = self._replica_descs([key])[0]
        return _replicas(reps) if code == 0 else []

    def batch_get_replica_desc(self, keys) -> dict:
        """``{key: [ReplicaDescriptor, ...]}`` for the keys that have complete replicas."""
        keys = list(keys)
        out = {}
        for key, (code, _size, reps) in zip(keys, self._replica_descs(keys)):
            if code == 0:
                out[key] = _replicas(reps)
        return out

    def create_copy_task(self, key: str, targets) -> tuple:
        """Copies ``key``'s object to each segment named in ``targets`` (a target that
        already holds a replica is skipped). ``(task_id, 0)`` or ``((0, 0), code)``:
        -704 no such object, -600 no targets or an unknown segment, -1010 a target
        that takes no replicas now (draining, or held for its owner's restart)."""
        if isinstance(targets, str):
            targets = [targets]
        high, low, code = self._create_copy_task(key, list(targets))
        return (high, low), code

    def create_move_task(self, key: str, source: str, target: str) -> tuple:
        """Moves ``key``'s replica on segment ``source`` to segment ``target``; reads
        keep working during the move. ``(task_id, 0)`` or ``((0, 0), code)``: -704 no
        such object, -600 source equal to target, an unknown target or a source that
        holds no replica, -1010 a target that takes no replicas now."""
        high, low, code = self._create_move_task(key, source, target)
        return (high, low), code

    def query_task(self, task_id) -> tuple:
        """``(QueryTaskResponse, 0)``, or ``(None, code)``: -1400 for an id the master
        does not know, -600 for something that is not a ``(high, low)`` pair."""
        ident = _task_id(task_id)
        if ident is None:
            return None, INVALID_PARAMS
        code, kind, status, created, updated, client, message = self._query_task(*ident)
        if code != 0:
            return None, code
        return QueryTaskResponse(ident, TaskType(kind), TaskStatus(status), created,
                                 updated, client, message), 0

    # Extra segments. A client here owns exactly one segment (``global_segment_size``
    # at setup); mounting more memory into the same client is refused with
    # NOT_SUPPORTED in the reference's answer shapes. Run another store (or another
    # segment-owning client) for more memory.

    def mount_segment(self, path: str, size: int, offset: int = 0, protocol: str = "tcp",
                      location: str = "") -> dict:
        """Refused: ``{"ret": -1012, "segment_ids": []}`` (one segment per client)."""
        logger.error("mount_segment(%r): a client owns one segment here; start another "
                     "store for more memory", path)
        return {"ret": NOT_SUPPORTED, "segment_ids": []}

    def allocate_and_mount_segment(self, size: int, protocol: str = "tcp",
                                   location: str = "") -> dict:
        """Refused: ``{"ret": -1012, "segment_ids": [], "allocated_size": 0}``."""
        logger.error("allocate_and_mount_segment(%d): a client owns one segment here; "
                     "start another store for more memory", size)
        return {"ret": NOT_SUPPORTED, "segment_ids": [], "allocated_size": 0}

    def unmount_segment(self, segment_ids, grace_period_seconds: int = 0) -> int:
        """Refused: -1012 (no extra segment can have been mounted; ``close()`` unmounts
        the client's own segment)."""
        logger.error("unmount_segment: no extra segments here; close() unmounts this "
                     "client's segment")
        return NOT_SUPPORTED

    def unmount_and_free_segment(self, segment_ids, grace_period_seconds: int = 0) -> int:
        """Refused: -1012, as ``unmount_segment``."""
        return self.unmount_segment(segment_ids, grace_period_seconds)

    def put_from_with_metadata(self, key, buffer_ptr, metadata_buffer_ptr, size,
                               metadata_size, config=None) -> int:
        """Stores ``metadata_size`` bytes at ``metadata_buffer_ptr`` followed by ``size``
        bytes at ``buffer_ptr`` as one object, from registered memory with no copy."""
        if size == 0:
            return 0
        ptrs, sizes = [buffer_ptr], [size]
        if metadata_size:
            ptrs, sizes = [metadata_buffer_ptr, buffer_ptr], [metadata_size, size]
        return self.batch_put_from_multi_buffers([key], [ptrs], [sizes], config)[0]
