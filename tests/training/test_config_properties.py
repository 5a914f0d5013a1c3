"""Property-based: any value of any setting is accepted, or refused before any work with a
ValueError naming the setting; from the command line, one line and exit code 2."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdml.cli import main
from cdml.training import RunConfig, apply_overrides
from cdml.training.resolve import check_ranges, resolve


def flatten(data, prefix=""):
    for name, value in data.items():
        if isinstance(value, dict) and name != "params":
            yield from flatten(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


KEYS = sorted(flatten(RunConfig().to_dict()))
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.one_of(st.integers(-3, 300), st.floats(-2, 2), st.text(max_size=2)), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def configure(key, value):
    """The checks a run makes on its settings before loading anything."""
    check_ranges(resolve(apply_overrides(RunConfig(), {key: value})))


@settings(max_examples=400, deadline=None)
@given(key=st.sampled_from(KEYS), value=VALUES)
def test_any_value_of_any_setting_is_accepted_or_refused_by_name(key, value):
    try:
        configure(key, value)
    except ValueError as error:
        assert key in str(error), (key, value, str(error))


def as_yaml(value):
    if isinstance(value, float) and not math.isfinite(value):
        return {math.inf: ".inf", -math.inf: "-.inf"}.get(value, ".nan")
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(as_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{as_yaml(k)}: {as_yaml(v)}" for k, v in value.items()) + "}"
    return repr(value)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=st.sampled_from(KEYS), value=VALUES)
def test_a_refused_setting_is_one_line_and_exit_2_from_the_command_line(
    key, value, tmp_path, capsys
):
    try:
        configure(key, value)
    except ValueError:
        pass
    else:
        return  # accepted: it would train
    out = tmp_path / "run"
    setting = f"{key}={as_yaml(value)}"
    code = main(["train", "--dataset", "digits", "--loss", "facility", "--set", setting,
                 "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, (key, value, err)
    assert "Traceback" not in err and key in err and len(err.strip().splitlines()) == 1
    assert not (out / "config.yaml").exists()


@pytest.mark.parametrize("value", ["abc", "[1, 2]", "3"])
def test_loss_params_must_be_a_mapping(value, capsys):
    code = main(
        ["train", "--dataset", "digits", "--loss", "facility", "--set", f"loss.params={value}"]
    )
    assert code == 2 and "loss.params" in capsys.readouterr().err
