"""``mooncake.engine``: the transfer engine as SGLang builds it before the store."""

from mooncake._mooncake import EngineRef, TransferEngine

__all__ = ["TransferEngine", "EngineRef"]
