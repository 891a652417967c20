"""A name -> constructor table whose accepted parameters are read from each constructor's signature."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Constructors by name, so adding an entry (a loss, an optimizer, a backbone) touches one file.

    Args:
        what: what the entries are, for messages (``optimizer``, ``loss``).
        supplied: parameters the framework passes itself (not settable by the user), e.g. ``params`` of an
            optimizer or ``name`` of a loss.
    """

    def __init__(self, what: str, supplied: Iterable[str] = ()) -> None:
        self.what = what
        self.supplied = frozenset(supplied)
        self._entries: dict[str, Callable[..., T]] = {}
        self._info: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **info: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator (or call) registering ``constructor`` under ``name`` with free-form ``info``."""

        def add(constructor: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._entries[name] = constructor
            self._info[name] = dict(info)
            return constructor

        return add

    @property
    def names(self) -> tuple[str, ...]:
        """Registered names in registration order."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def info(self, name: str) -> dict[str, Any]:
        """The ``info`` given at registration."""
        return self._info[self.check(name)]

    def check(self, name: str) -> str:
        """``name`` if registered, else a ValueError listing the names and the closest one."""
        if name in self._entries:
            return name
        close = difflib.get_close_matches(str(name), self.names, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(f"{self.what} {name!r} unknown{hint} (expected one of {', '.join(self.names)})")

    def accepted(self, name: str) -> dict[str, Any]:
        """User-settable parameters of ``name`` with their defaults (``inspect.Parameter.empty`` if none)."""
        signature = inspect.signature(self._entries[self.check(name)])
        return {
            p.name: p.default
            for p in signature.parameters.values()
            if p.name not in self.supplied and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

    def check_params(self, name: str, params: Mapping[str, Any]) -> None:
        """Raise a ValueError naming every key of ``params`` that ``name``'s constructor does not accept."""
        allowed = self.accepted(name)
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(
                f"{self.what} {name!r}: unknown parameter(s) {unknown}; allowed: {sorted(allowed)}"
            )

    def build(self, name: str, *args: Any, **kwargs: Any) -> T:
        """Call the constructor of ``name``; keys it does not accept raise (see :meth:`check_params`)."""
        self.check_params(name, {k: v for k, v in kwargs.items() if k not in self.supplied})
        return self._entries[name](*args, **kwargs)
