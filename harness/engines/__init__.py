"""Engine adapters, discovered from the modules of this package (one file per engine)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from functools import lru_cache

from harness.engines.base import EngineAdapter


class UnknownEngineError(KeyError):
    """No adapter has that name."""

    def __str__(self) -> str:
        return str(self.args[0])


@lru_cache(maxsize=1)
def adapter_classes() -> dict[str, type[EngineAdapter]]:
    """Every concrete adapter, by its column name."""
    found: dict[str, type[EngineAdapter]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, EngineAdapter) and not inspect.isabstract(cls) and cls.__module__ == module.__name__:
                found[cls.name] = cls
    return found


def get_adapter(name: str) -> EngineAdapter:
    """A fresh adapter for engine `name` (case-insensitive)."""
    classes = {key.lower(): cls for key, cls in adapter_classes().items()}
    try:
        return classes[name.lower()]()
    except KeyError:
        known = ", ".join(sorted(adapter_classes()))
        raise UnknownEngineError(f"unknown engine {name!r}; known engines: {known}") from None
