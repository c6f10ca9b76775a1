"""The three calling forms of ``MooncakeDistributedStore.setup()``.

SGLang calls it positionally with an 8th positional ``engine`` plus keywords, and
retries without a keyword when the ``TypeError`` names it; LMCache calls the dict form
first and falls back to the positional form only on ``TypeError``. So: calling-form
mistakes (unknown keyword, too many arguments, wrong type) raise ``TypeError`` naming
the argument, while bad *values* (a missing required key in the dict, a size like
``"50%"``) make ``setup()`` return INVALID_PARAMS (-600) with a logged reason, as the
reference does.
"""

from dataclasses import dataclass
from typing import Any, Optional

DEFAULT_SEGMENT = 16 * 1024 * 1024
DEFAULT_LOCAL_BUFFER = 16 * 1024 * 1024
DEFAULT_MASTER = "127.0.0.1:50051"

# The positional order of the reference's setup().
POSITIONAL = (
    "local_hostname",
    "metadata_server",
    "global_segment_size",
    "local_buffer_size",
    "protocol",
    "rdma_devices",
    "master_server_addr",
    "engine",
)
# Accepted by keyword only (tenant_id: the tenant declared to a master with
# authentication; the others stored but without effect in this implementation).
KEYWORD_ONLY = {
    "enable_ssd_offload": False,
    "ssd_offload_path": "",
    "tenant_id": "default",
    "enable_client_http_server": False,
    "client_http_port": 9300,
    "ipc_socket_path": "",
}
# Other spellings callers use for the same setting.
ALIASES = {"device_name": "rdma_devices", "master_server_address": "master_server_addr"}
DEFAULTS = {
    "global_segment_size": DEFAULT_SEGMENT,
    "local_buffer_size": DEFAULT_LOCAL_BUFFER,
    "protocol": "tcp",
    "rdma_devices": "",
    "master_server_addr": DEFAULT_MASTER,
    "engine": None,
}
REQUIRED = ("local_hostname", "metadata_server")


class SetupValueError(ValueError):
    """A value setup() cannot use; setup() returns -600 and logs this message."""


@dataclass
class SetupArgs:
    local_hostname: str
    metadata_server: str
    global_segment_size: Any
    local_buffer_size: Any
    protocol: str
    rdma_devices: str
    master_server_addr: str
    engine: Any = None
    options: Optional[dict] = None


def _canonical(name: str) -> str:
    return ALIASES.get(name, name)


def _check_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"setup(): {name} must be a str, got {type(value).__name__}")
    return value


def _check_size(name: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(
            f"setup(): {name} must be an int or a size string, got {type(value).__name__}"
        )
    return value


def _build(values: dict, *, strict_types: bool) -> SetupArgs:
    """Fills defaults and checks types. In the dict form bad types are values."""
    for name in REQUIRED:
        if name not in values:
            if strict_types:
                raise TypeError(f"setup() missing required argument: '{name}'")
            raise SetupValueError(f"setup(): missing required config: {name}")
    merged = {**DEFAULTS, **KEYWORD_ONLY, **values}
    try:
        for name in ("local_hostname", "metadata_server", "protocol", "rdma_devices",
                     "master_server_addr"):
            _check_str(name, merged[name])
        for name in ("global_segment_size", "local_buffer_size"):
            _check_size(name, merged[name])
    except TypeError as e:
        if strict_types:
            raise
        raise SetupValueError(str(e)) from None
    options = {k: merged[k] for k in KEYWORD_ONLY}
    return SetupArgs(
        local_hostname=merged["local_hostname"],
        metadata_server=merged["metadata_server"],
        global_segment_size=merged["global_segment_size"],
        local_buffer_size=merged["local_buffer_size"],
        protocol=merged["protocol"],
        rdma_devices=merged["rdma_devices"],
        master_server_addr=merged["master_server_addr"],
        engine=merged["engine"],
        options=options,
    )


def _from_dict(config: dict) -> SetupArgs:
    known = set(POSITIONAL) | set(KEYWORD_ONLY) | set(ALIASES)
    values = {}
    for key, value in config.items():
        if not isinstance(key, str) or key not in known:
            # The reference ignores keys it does not know; so do we.
            continue
        values[_canonical(key)] = value
    return _build(values, strict_types=False)


def parse(args: tuple, kwargs: dict) -> SetupArgs:
    """Normalises ``setup(*args, **kwargs)``; raises TypeError for calling-form errors."""
    if len(args) == 1 and isinstance(args[0], dict) and not kwargs:
        return _from_dict(args[0])
    if not args and set(kwargs) == {"config"} and isinstance(kwargs["config"], dict):
        return _from_dict(kwargs["config"])
    if len(args) > len(POSITIONAL):
        raise TypeError(
            f"setup() takes at most {len(POSITIONAL)} positional arguments "
            f"({len(args)} given)"
        )
    values = dict(zip(POSITIONAL, args))
    for key, value in kwargs.items():
        name = _canonical(key)
        if name not in POSITIONAL and name not in KEYWORD_ONLY:
            raise TypeError(f"setup() got an unexpected keyword argument '{key}'")
        if name in values:
            raise TypeError(f"setup() got multiple values for argument '{key}'")
        values[name] = value
    return _build(values, strict_types=True)
