"""Settings declared once: each config field carries its help, its command-line flag, its
range and the Lightning argument it sets (:func:`setting`), and the parser, the checks, the
error messages and the trainer's arguments are derived from these declarations."""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass
from typing import Any


@dataclass(frozen=True)
class Spec:
    """What a setting declares beside its type and default.

    ``help``: one phrase for ``--help`` (or a function returning it, called when the parser
    is built: the names of a registry, say); ``flag``: its option of ``cdml train``, if any;
    ``at_least``: the smallest value (``None`` values pass); ``finite``: NaN and inf refused;
    ``check(value)``: what the value must be when it is not (a phrase), else None;
    ``lightning``: the ``lightning.Trainer`` argument it is passed as.
    """

    help: str | Callable[[], str] = ""
    flag: str | None = None
    at_least: float | None = None
    finite: bool = False
    check: Callable[[Any], str | None] | None = None
    lightning: str | None = None

    def wanted(self, value: Any) -> str | None:
        """What ``value`` must be if it breaks this declaration, else None."""
        if value is None:
            return None
        if (self.finite and not math.isfinite(value)) or (
            self.at_least is not None and value < self.at_least
        ):
            bound = "" if self.at_least is None else f"{self.at_least:g}"
            if self.finite:
                return "finite" + (f" and >= {bound}" if bound else "")
            return f"at least {bound}"
        return self.check(value) if self.check else None


def setting(
    default: Any = MISSING, *, factory: Callable[[], Any] | None = None, **spec: Any
) -> Any:
    """A dataclass field of ``default`` (or ``factory()``) declaring :class:`Spec` ``spec``."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"spec": Spec(**spec)})
    return dataclasses.field(default=default, metadata={"spec": Spec(**spec)})


def spec_of(field: dataclasses.Field) -> Spec:
    return field.metadata.get("spec", Spec())


def declared(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """``(dotted key, field, type hint)`` of every setting of the config dataclass ``cls``,
    sections first-level in order (``data.image_size``, ...)."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            yield from declared(hint, f"{prefix}{field.name}.")
        else:
            yield f"{prefix}{field.name}", field, hint


def flags(cls: type) -> dict[str, str]:
    """``{dotted key: flag}`` of the settings of ``cls`` that have a command-line flag."""
    return {key: spec_of(f).flag for key, f, _ in declared(cls) if spec_of(f).flag}


def described(key: str, cls: type) -> str:
    """``key``, and its flag in brackets when it has one: ``data.image_size (--image-size)``."""
    flag = flags(cls).get(key)
    return f"{key} ({flag})" if flag else key


def value_at(config: Any, key: str) -> Any:
    """The value of dotted ``key`` (``data.image_size``) in the config dataclass ``config``."""
    value = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def check_declared(config: Any, cls: type | None = None) -> None:
    """``ValueError`` naming the first setting of ``config`` outside its declared range."""
    cls = cls or type(config)
    for key, field, _ in declared(cls):
        value = value_at(config, key)
        wanted = spec_of(field).wanted(value)
        if wanted:
            raise ValueError(f"{described(key, cls)} must be {wanted}, got {value!r}")


def lightning_arguments(section: Any) -> dict[str, Any]:
    """``{Lightning argument: value}`` of the settings of ``section`` declaring one."""
    return {
        spec_of(f).lightning: getattr(section, f.name)
        for f in dataclasses.fields(section)
        if spec_of(f).lightning
    }


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One option of ``parser`` per setting of ``cls`` with a flag, its help the declared
    one and its default; values are read as :func:`read_flags` says."""
    instance = cls()
    for key, field, _ in declared(cls):
        spec = spec_of(field)
        if not spec.flag:
            continue
        value = value_at(instance, key)
        computed = callable(spec.help)
        default = "" if value is None or computed else f" (default {value})"
        # argparse formats help with %: a % of the text is doubled.
        text = (spec.help() if computed else spec.help).replace("%", "%%")
        parser.add_argument(
            spec.flag,
            dest=key,
            metavar=spec.flag.lstrip("-").upper().replace("-", "_"),
            default=None,
            help=f"{text}{default}",
        )


def read_flags(args: argparse.Namespace, cls: type, parse: Callable[[str], Any]) -> dict[str, Any]:
    """The given flags of ``cls``'s settings as overrides ``{dotted key: value}``: a text
    setting takes the text as it is, any other reads it with ``parse`` (YAML), so a flag and
    ``--set`` give the same value and the same type errors."""
    overrides = {}
    for key, field, hint in declared(cls):
        text = getattr(args, key, None) if spec_of(field).flag else None
        if text is None:
            continue
        try:
            overrides[key] = text if _is_text(hint) else parse(text)
        except ValueError as error:
            raise ValueError(f"{spec_of(field).flag}: cannot read {text!r} ({error})") from None
    return overrides


def _is_text(hint: Any) -> bool:
    """Whether a setting of type ``hint`` is text: ``str`` or ``str | None``."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return hint is str or (union and set(typing.get_args(hint)) == {str, type(None)})
