"""Named entries of one kind, filled by a decorator: the one shape of every registry of cdml
(training methods, datasets, clustering methods, optimisers, loggers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownName(ValueError, KeyError):
    """A name a registry does not hold: a ``ValueError`` naming the choices (reported as a
    user's error), and a ``KeyError`` (as a mapping's missing key)."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Mapping[str, T], Generic[T]):
    """A read-only mapping ``name -> entry`` in the order of registration.

    Args:
        kind: what an entry is, for messages (``"loss"``, ``"dataset name"``, ...).
        setting: the setting that names an entry (``"trainer.loggers"``), put before the
            message of an unknown name.
        hint: said after the known names in that message (another accepted form).

    ``registry.register(name)`` decorates an entry (or ``register(name, entry)`` adds one);
    ``registry[name]`` is the entry, and an unknown name raises :class:`UnknownName`
    listing the known ones; :meth:`create` calls a factory entry.
    """

    def __init__(self, kind: str, setting: str | None = None, hint: str = "") -> None:
        self.kind = kind
        self.setting = setting
        self.hint = hint
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None) -> Any:
        """Add ``entry`` as ``name`` and return it, or, without ``entry``, a decorator that
        does; ``ValueError`` when ``name`` already holds another entry."""
        if entry is None:
            return lambda decorated: self.register(name, decorated)
        if self._entries.get(name, entry) is not entry:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> T:
        """Remove and return the entry ``name`` (a plugin's, or a test's)."""
        return self._entries.pop(name)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(self.unknown(name)) from None

    def unknown(self, name: Any) -> str:
        """The message for an unknown ``name``: it and the known names."""
        prefix = f"{self.setting}: " if self.setting else ""
        hint = f", {self.hint}" if self.hint else ""
        return f"{prefix}unknown {self.kind} {name!r}; known: {', '.join(self)}{hint}"

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the factory entry ``name`` with ``args`` and ``kwargs``."""
        factory: Callable[..., Any] = self[name]  # type: ignore[assignment]
        return factory(*args, **kwargs)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self)})"
