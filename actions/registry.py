"""The executor registry: catalog name -> executor instance, checked at registration.

An explicit object (tests build their own); no module-level mutable state.
"""

from __future__ import annotations

from collections.abc import Iterable

from actions.base import Executor
from healer.catalog import Catalog, default_catalog


class RegistryError(ValueError):
    pass


class ExecutorRegistry:
    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = catalog or default_catalog()
        self._executors: dict[str, Executor] = {}

    def register(self, executor: Executor) -> None:
        spec = self.catalog.get(executor.name)
        if spec is None:
            raise RegistryError(f"executor {executor.name!r} has no catalog spec")
        if executor.name in self._executors:
            raise RegistryError(f"executor {executor.name!r} registered twice")
        if spec.reversible != executor.reversible:
            raise RegistryError(
                f"executor {executor.name!r}: reversible={executor.reversible} "
                f"but the catalog says {spec.reversible}"
            )
        self._executors[executor.name] = executor

    def register_all(self, executors: Iterable[Executor]) -> None:
        for ex in executors:
            self.register(ex)

    def get(self, name: str) -> Executor | None:
        return self._executors.get(name)

    def names(self) -> list[str]:
        return sorted(self._executors)

    async def close(self) -> None:
        for ex in self._executors.values():
            await ex.close()
