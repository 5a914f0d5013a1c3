"""How cdml's commands are built and run.

Each option of a command that calls a library function is derived from that function
(:func:`add_options`): its type, default and help come from the signature and the ``Args:``
section of the docstring, so that an option is stated once, where a Python caller reads it
too. Every input error is one line on stderr and exit code 2 (:class:`Parser`,
:func:`run_command`).
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

CALL_KEYWORDS = "call_keywords"


class Parser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line, as every other input error of cdml
    (``--help`` still shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpWithDefaults(argparse.HelpFormatter):
    """Help that states each option's default (when it has one)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unset = default is None or isinstance(default, bool) or default in ([], ())
        if not unset and action.default is not argparse.SUPPRESS and action.option_strings:
            return f"{text} (default %(default)s)" if "default" not in text else text
        return text


def run_command(name: str, handler: Callable[[], int]) -> int:
    """The exit code of ``handler()``, the work of ``cdml name``: bad input (``ValueError``,
    ``OSError``, a library's refusal of a setting) is one line on stderr and 2; Ctrl-C 130;
    Lightning's stop on SIGTERM 143; any other error names its type, 1. ``CDML_DEBUG=1``
    shows the traceback instead."""
    debug = bool(os.environ.get("CDML_DEBUG"))
    try:
        return handler()
    except (ValueError, OSError) as error:
        if debug:
            raise
        print(f"cdml {name}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cdml {name}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as stop:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if not isinstance(stop, SIGTERMException):
            raise
        # Lightning stops at the next batch on SIGTERM; its SystemExit would exit with 0.
        print(
            f"cdml {name}: stopped by SIGTERM; the epochs finished before it are kept "
            "(cdml train --out RUN --resume continues)",
            file=sys.stderr,
        )
        return 143
    except Exception as error:  # a library's error on input cdml did not check, or a bug
        if debug:
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(
            f"cdml {name}: error ({type(error).__name__}): {first} (set CDML_DEBUG=1 "
            "to see the traceback)",
            file=sys.stderr,
        )
        return 2 if _is_input_error(error) else 1


def _is_input_error(error: Exception) -> bool:
    """Whether a library raised ``error`` on the user's settings (Lightning's configuration
    checks, YAML), not on a fault of cdml."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from yaml import YAMLError

    return isinstance(error, MisconfigurationException | YAMLError)


def add_set_option(parser: argparse.ArgumentParser, example: str) -> None:
    """``--set KEY=VALUE`` (repeatable): config overrides, read by :func:`read_sets`."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override any config value, e.g. --set {example} (repeatable)",
    )


def read_sets(items: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` arguments as overrides ``{dotted key: value}``, values read as
    YAML scalars or lists."""
    from cdml.training.config import parse_yaml

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = parse_yaml(value)
        except ValueError as error:
            raise ValueError(f"--set {key}: cannot read value {value!r} ({error})") from None
    return overrides


def parameter_docs(function: Callable[..., Any]) -> dict[str, str]:
    """``{parameter: text}`` of the ``Args:`` section of ``function``'s docstring (Google
    style: ``name: text`` indented under ``Args:``, continuation lines indented further)."""
    lines = inspect.getdoc(function).splitlines() if function.__doc__ else []
    docs: dict[str, str] = {}
    inside, name = False, None
    for line in lines:
        if line.strip() == "Args:":
            inside = True
            continue
        if not inside:
            continue
        if line and not line.startswith(" "):
            break  # the next section
        entry = re.match(r"^ {4}(\*{0,2}\w+)(?: \(.*?\))?: ?(.*)$", line)
        if entry:
            name = entry[1].lstrip("*")
            docs[name] = entry[2].strip()
        elif name and line.strip():
            docs[name] += " " + line.strip()
    return {key: re.sub(r"``(.*?)``", r"\1", text).rstrip(".") for key, text in docs.items()}


def add_options(
    parser: argparse.ArgumentParser,
    function: Callable[..., Any],
    names: Iterable[str] | None = None,
    *,
    but: Collection[str] = (),
    positional: Collection[str] = (),
    flags: Mapping[str, str] | None = None,
    choices: Mapping[str, Iterable[Any]] | None = None,
) -> None:
    """One option of ``parser`` per parameter ``names`` of ``function`` (default: every
    keyword parameter but ``progress``, ``**`` ones and those in ``but``).

    Its default is the parameter's (none: a required option); its help the parameter's
    entry in the docstring's ``Args:``; its flag ``--name-with-dashes`` (``-k`` for one
    letter), or ``flags[name]``. A ``bool`` parameter is a switch: ``--name`` when it
    defaults to False, ``--no-name`` ("without" its help) when it defaults to True. Its
    value is read as the annotation says (paths as :class:`Path`, ``int``, ``float``, a
    sequence of ints as ``1,2,4``, ``int | Literal["auto"]`` as a positive count or the
    word); ``choices[name]`` lists the accepted values. Names
    in ``positional`` are positional arguments (a sequence takes one or more). The values
    given go back to ``function`` through :func:`keywords`.
    """
    hints = typing.get_type_hints(function)
    parameters = inspect.signature(function).parameters
    docs = parameter_docs(function)
    if names is None:
        names = [
            p.name for p in parameters.values()
            if p.kind is not p.VAR_KEYWORD and p.name != "progress" and p.name not in but
        ]  # fmt: skip
    names = list(names)
    for name in names:
        if name not in docs:
            raise TypeError(f"{function.__qualname__}'s docstring documents no {name!r} in Args:")
        parameter = parameters[name]
        hint = hints.get(name, str)
        default = None if parameter.default is inspect.Parameter.empty else parameter.default
        text = docs[name].replace("%", "%%")
        flag = (flags or {}).get(name) or ("-" if len(name) == 1 else "--") + name.replace("_", "-")
        if _base(hint) is bool:
            negated = default is True
            parser.add_argument(
                f"--no-{flag[2:]}" if negated else flag,
                dest=name,
                action="store_false" if negated else "store_true",
                help=f"without {text}" if negated else text,
            )
            continue
        read = _reader(hint)
        options: dict[str, Any] = {"help": text}
        if name in (choices or {}):
            options["choices"] = list(choices[name])
        if name in positional:
            sequence = _is_sequence(hint) and read is Path
            nargs = "+" if sequence else ("?" if default is None else None)
            parser.add_argument(name, type=read, nargs=nargs, **options)
        else:
            required = parameter.default is inspect.Parameter.empty
            parser.add_argument(flag, dest=name, type=read, required=required, **options)
        parser.set_defaults(**{name: default})
    known = parser.get_default(CALL_KEYWORDS) or ()
    parser.set_defaults(**{CALL_KEYWORDS: (*known, *names)})


def keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The values of the options :func:`add_options` added, by parameter name."""
    return {name: getattr(args, name) for name in getattr(args, CALL_KEYWORDS, ())}


def _base(hint: Any) -> Any:
    """``hint`` without ``None``; of a union of paths and text, :class:`Path`."""
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return hint
    options = [option for option in typing.get_args(hint) if option is not type(None)]
    if Path in options:
        return Path
    return options[0] if len(options) == 1 else typing.Union[tuple(options)]  # noqa: UP007


def _is_sequence(hint: Any) -> bool:
    origin = typing.get_origin(_base(hint))
    return origin is not None and isinstance(origin, type) and issubclass(origin, Sequence)


def _reader(hint: Any) -> Callable[[str], Any]:
    base = _base(hint)
    if _is_sequence(hint):
        (item,) = typing.get_args(_base(hint))
        return Path if _base(item) is Path else _integers
    if base in (int, float, Path):
        return base
    words = [w for o in typing.get_args(base) if typing.get_origin(o) is typing.Literal
             for w in typing.get_args(o)]  # fmt: skip
    if int in typing.get_args(base) and words:  # a count, or a word: "auto"
        return lambda text: _count_or_word(text, words)
    return str


def _count_or_word(text: str, words: Sequence[str]) -> int | str:
    if text in words:
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or {' or '.join(words)}, got {text!r}"
        )
    return int(text)


def _integers(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` as ``(1, 2, 4)``: positive integers."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values
