"""Problems found in a dataset: counted by kind, shown with a few example names."""
from __future__ import annotations

import sys
from collections import defaultdict


class Problems:
    """Collects non-fatal dataset problems, e.g. ``problems.add("listed video has no folder", "x.mp4")``."""

    def __init__(self, examples: int = 5):
        self.examples = examples
        self._items: dict[str, list[str]] = defaultdict(list)

    def add(self, kind: str, item: str) -> None:
        self._items[kind].append(item)

    def count(self, kind: str) -> int:
        return len(self._items.get(kind, ()))

    def __bool__(self) -> bool:
        return bool(self._items)

    def lines(self) -> list[str]:
        out = []
        for kind, items in self._items.items():
            shown = ", ".join(items[: self.examples])
            more = f" (+{len(items) - self.examples} more)" if len(items) > self.examples else ""
            out.append(f"{len(items)} {kind}: {shown}{more}")
        return out

    def as_dict(self) -> dict[str, list[str]]:
        return {kind: list(items) for kind, items in self._items.items()}

    def warn(self, stream=None) -> None:
        for line in self.lines():
            print(f"warning: {line}", file=stream or sys.stderr)
