"""The generic registry and typed settings every variant family is built on."""

from dataclasses import dataclass
from typing import Literal

import pytest

from unloc.registry import (
    Choice,
    ConfigError,
    NoSettings,
    Registry,
    Spec,
    UnknownNameError,
    describe,
    parse_settings,
    setting,
    to_dict,
)


@dataclass(frozen=True)
class Inner:
    margin: float = setting(0.5, "a nested value", exclusive_minimum=0)


@dataclass(frozen=True)
class Settings:
    lr: float = setting(help="required", exclusive_minimum=0)
    steps: int = setting(3, "an integer", minimum=1)
    mode: Literal["fast", "exact"] = setting("exact", "one of two")
    limit: int | None = setting(None, "optional")
    names: tuple[str, ...] = setting(("a", "b"), "a list")
    flag: bool = setting(False, "a boolean")
    inner: Inner = setting(Inner(), "nested settings")


def test_registration_by_decorator_keeps_order_and_the_function():
    reg = Registry("widget")

    @reg.register("b", settings=Settings, needs=("forget",))
    def b(x):
        """Makes a b.

        More text."""
        return x

    @reg.register("a")
    def a(x):
        return x

    assert reg.names() == ["b", "a"] and b(1) == 1
    assert reg["b"].fn is b and reg["b"].settings is Settings and reg["b"].needs == ("forget",)
    assert reg["b"].help == "Makes a b." and reg["a"].settings is NoSettings
    assert "b" in reg and "c" not in reg and len(reg) == 2


def test_a_duplicate_name_is_an_error():
    reg = Registry("widget")
    reg.add(Spec(name="x", fn=print))
    with pytest.raises(ValueError, match="widget 'x' is registered twice"):
        reg.add(Spec(name="x", fn=print))


def test_an_unknown_name_lists_the_valid_ones_and_suggests_the_closest():
    reg = Registry("objective")
    for name in ("npo", "wga", "dpo"):
        reg.add(Spec(name=name, fn=print))
    with pytest.raises(UnknownNameError) as err:
        reg.get("npoo", "unlearn.objectives[0]")
    assert str(err.value) == ("unlearn.objectives[0]: unknown objective 'npoo'; did you mean 'npo'? "
                              "(allowed: npo, wga, dpo)")
    with pytest.raises(KeyError, match="unknown objective 'zzz' \\(allowed"):  # no suggestion when none is close
        reg["zzz"]
    assert reg.pattern() in ("npo|wga|dpo", "npo|dpo|wga", "dpo|npo|wga", "wga|npo|dpo", "dpo|wga|npo", "wga|dpo|npo")


def test_settings_parse_with_defaults_and_normalised_types():
    s = parse_settings(Settings, {"lr": 1, "names": ["x"], "inner": {"margin": 2}}, "block")
    assert s == Settings(lr=1.0, names=("x",), inner=Inner(2.0))
    assert isinstance(s.lr, float) and s.limit is None and s.mode == "exact"
    assert to_dict(s) == {"lr": 1.0, "steps": 3, "mode": "exact", "limit": None, "names": ["x"], "flag": False,
                          "inner": {"margin": 2.0}}
    assert parse_settings(Settings, to_dict(s), "again") == s
    assert [row[0] for row in describe(Settings)] == ["lr", "steps", "mode", "limit", "names", "flag", "inner"]
    assert describe(Settings)[0][2] == "required"


@pytest.mark.parametrize("value,message", [
    ({}, "block.lr: required setting missing (required)"),
    ({"lr": 1, "stpes": 2}, "block.stpes: unknown setting; did you mean 'steps'? (allowed: lr, steps, mode, limit"),
    ({"lr": "1"}, "block.lr: expected a number, got a string '1'"),
    ({"lr": True}, "block.lr: expected a number, got a boolean True"),
    ({"lr": 1, "steps": 2.5}, "block.steps: expected an integer, got a number 2.5"),
    ({"lr": 1, "steps": 0}, "block.steps: 0 is less than the minimum of 1"),
    ({"lr": 0}, "block.lr: 0.0 must be greater than 0"),
    ({"lr": 1, "mode": "fats"}, "block.mode: 'fats' is not one of 'fast', 'exact'; did you mean 'fast'?"),
    ({"lr": 1, "limit": "x"}, "block.limit: 'x' is not int | null"),
    ({"lr": 1, "names": "x"}, "block.names: expected a list, got a string 'x'"),
    ({"lr": 1, "names": [1]}, "block.names[0]: expected a string, got an integer 1"),
    ({"lr": 1, "flag": 1}, "block.flag: expected true or false, got an integer 1"),
    ({"lr": 1, "inner": {"margin": -1}}, "block.inner.margin: -1.0 must be greater than 0"),
    ([1], "block: expected a mapping of settings, got a list [1]"),
])
def test_a_bad_block_fails_naming_the_key(value, message):
    with pytest.raises(ConfigError) as err:
        parse_settings(Settings, value, "block")
    assert str(err.value).startswith(message), str(err.value)


def test_a_choice_is_a_name_or_a_mapping_with_its_settings_and_common_keys():
    reg = Registry("regularizer")
    reg.add(Spec(name="kl", fn=print, settings=Inner))
    assert reg.choose("kl", "r").settings == Inner()
    choice = reg.choose({"name": "kl", "weight": 2, "margin": 1}, "r", common={"weight": 1.0})
    assert isinstance(choice, Choice) and choice.common == {"weight": 2} and choice.settings == Inner(1.0)
    assert choice.to_dict() == {"name": "kl", "weight": 2, "margin": 1.0}
    with pytest.raises(ConfigError, match="r.margn: unknown setting; did you mean 'margin'"):
        reg.choose({"name": "kl", "margn": 1}, "r")
    with pytest.raises(ConfigError, match="r: expected a regularizer name or a mapping with 'name'"):
        reg.choose({"weight": 1}, "r")


def test_settings_defaults_must_be_frozen():
    with pytest.raises(TypeError, match="frozen"):
        setting([1, 2], "a list default")
