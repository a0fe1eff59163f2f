"""Warm models, least recently used first out, bounded by count and by weight memory.

Loading happens outside the cache's lock (one loader per model), so a cold load never stalls a
request for a model that is already warm.
"""

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Loader = Callable[[dict[str, Any]], tuple[Any, int]]


@dataclass
class Entry:
    model_id: int
    version: str
    model: Any
    nbytes: int
    task: str
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    hits: int = 0

    def info(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "version": self.version,
            "task": self.task,
            "memory_mb": round(self.nbytes / 2**20, 2),
            "loaded_at": self.loaded_at,
            "last_used": self.last_used,
            "hits": self.hits,
        }


class ModelCache:
    def __init__(self, loader: Loader, max_models: int, max_bytes: int) -> None:
        self.loader = loader
        self.max_models = max(1, max_models)
        self.max_bytes = max_bytes
        self.loads = 0
        self.evictions = 0
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[int, threading.Lock] = {}
        self.on_change: Callable[[], None] = lambda: None

    def get(self, ref: dict[str, Any]) -> tuple[Entry, bool]:
        """The warm model for `ref` and whether it was a hit; loads (and maybe evicts) on a miss."""
        model_id, version = int(ref["id"]), str(ref["version"])
        entry = self._hit(model_id, version)
        if entry is not None:
            return entry, True
        with self._lock:
            loading = self._loading.setdefault(model_id, threading.Lock())
        with loading:
            entry = self._hit(model_id, version)  # another thread loaded it meanwhile
            if entry is not None:
                return entry, True
            model, nbytes = self.loader(ref)
            entry = Entry(model_id, version, model, nbytes, str(ref["task"]))
            with self._lock:
                self._entries.pop(model_id, None)  # an older version of the same model
                self._entries[model_id] = entry
                self.loads += 1
                self._evict(keep=model_id)
        self.on_change()
        return entry, False

    def is_warm(self, ref: dict[str, Any]) -> bool:
        """Whether `ref` would be a hit now (without counting a use)."""
        with self._lock:
            entry = self._entries.get(int(ref["id"]))
            return entry is not None and entry.version == str(ref["version"])

    def _hit(self, model_id: int, version: str) -> Entry | None:
        with self._lock:
            entry = self._entries.get(model_id)
            if entry is None or entry.version != version:
                return None
            self._entries.move_to_end(model_id)
            entry.hits += 1
            entry.last_used = time.time()
            return entry

    def _evict(self, keep: int) -> None:
        while len(self._entries) > 1 and (
            len(self._entries) > self.max_models or self.used_bytes > self.max_bytes
        ):
            oldest = next(iter(self._entries))
            if oldest == keep:
                break
            del self._entries[oldest]
            self.evictions += 1

    @property
    def used_bytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def unload(self, model_id: int) -> bool:
        with self._lock:
            removed = self._entries.pop(model_id, None) is not None
        if removed:
            self.on_change()
        return removed

    def clear(self) -> int:
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
        if count:
            self.on_change()
        return count

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            models = [e.info() for e in reversed(self._entries.values())]  # most recently used first
            used = self.used_bytes
        return {
            "models": models,
            "max_models": self.max_models,
            "max_mb": round(self.max_bytes / 2**20, 2),
            "used_mb": round(used / 2**20, 2),
            "loads": self.loads,
            "evictions": self.evictions,
        }
