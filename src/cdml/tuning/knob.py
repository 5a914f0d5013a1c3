"""One setting's range for a tuner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Knob:
    """The values a tuner tries for one setting: a number in ``[low, high]`` (log-uniform
    when ``log``, an integer when ``integer``) or one of ``choices``; ``form`` turns the
    drawn value into the setting's (e.g. a crop's smallest share into ``[low, 1.0]``) and
    ``inverse`` a setting into the drawn value."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] = ()
    form: Callable[[Any], Any] | None = None
    inverse: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        if not self.choices and (self.low is None or self.high is None or self.low > self.high):
            raise ValueError(f"a knob needs choices or low <= high, got {self}")

    def suggest(self, trial: Any, name: str) -> Any:
        """The value of setting ``name`` that an Optuna ``trial`` draws."""
        if self.choices:
            value = trial.suggest_categorical(name, list(self.choices))
        elif self.integer:
            value = trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        else:
            value = trial.suggest_float(name, self.low, self.high, log=self.log)
        return self.form(value) if self.form else value

    def drawn(self, setting: Any) -> Any | None:
        """The value a trial draws to give ``setting``; ``None`` where the range lacks it."""
        value = self.inverse(setting) if self.inverse else setting
        if self.choices:
            return value if value in self.choices else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if not self.low <= value <= self.high or (self.integer and value != int(value)):
            return None
        return int(value) if self.integer else value
