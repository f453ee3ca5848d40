"""The stage command line: built from the stage registry, help for every stage, params checked
against each stage's spec, and clear failures (no traceback without -v) on bad input."""

import dataclasses
import json
import subprocess
import sys

import pytest

from unloc.cli import build_parser, main
from unloc.stages import STAGES


def test_every_registered_stage_is_a_subcommand_with_help(capsys):
    sub = next(a for a in build_parser()._actions if a.dest == "stage")
    assert [name for name in sub.choices if name != "eval"] == STAGES.names()  # eval: tests/cli/test_eval.py
    for spec in STAGES.specs():
        with pytest.raises(SystemExit) as e:
            main([spec.name, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: unloc {spec.name}" in out
        for arg in spec.args:
            assert (arg.name if arg.positional else f"--{arg.name.replace('_', '-')}") in out, (spec.name, arg.name)
        if spec.takes_params:
            assert "--params" in out


def test_stage_names_are_one_name_for_function_subcommand_and_rule():
    import re
    from pathlib import Path

    rules_dir = Path(__file__).resolve().parents[2] / "workflow" / "rules"
    rules = {m for p in rules_dir.glob("*.smk") if p.name != "targets.smk"  # rules that only ask for files
             for m in re.findall(r"^rule (\w+):", p.read_text(), re.M)}
    stages = {s.name for s in STAGES.specs() if s.workflow}
    assert stages <= rules
    # a second rule of a stage (localize_scored: the localizers that run a model) is named after it;
    # `unloc eval`, a command of its own, runs as the rules evaluate and evaluate_<scenario>
    others = {r for r in rules - stages if r != "evaluate" and not r.startswith("evaluate_")}
    assert all(any(rule.startswith(f"{stage}_") for stage in stages) for rule in others), others
    for spec in STAGES.specs():
        assert spec.fn.__name__ == spec.name


@pytest.mark.parametrize("stage", [spec.name for spec in STAGES.specs() if spec.variants])
def test_help_lists_every_variant_a_stage_chooses_from_with_its_settings(stage, capsys):
    with pytest.raises(SystemExit):
        main([stage, "--help"])
    out = capsys.readouterr().out
    for registry in STAGES[stage].variants:
        assert f"{registry.family}s:" in out
        for variant in registry.specs():
            assert f"  {variant.name}" in out, variant.name
            for field in dataclasses.fields(variant.settings):
                assert f"      {field.name} (" in out, (variant.name, field.name)


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "unloc.cli", "--help"], capture_output=True, text=True, check=True,
                         timeout=600)
    assert "inject_forget" in out.stdout


def test_params_must_be_a_json_object(capsys):
    with pytest.raises(SystemExit):
        main(["localize", "--params", "{ratio: 0.1}", "--model", "m", "--out", "o"])
    assert "--params is not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize("stage,params,message", [
    ("unlearn", {}, "unlearn --params.max_length: required setting missing"),
    ("unlearn", {"objective": "npo", "block": {"lr": 1.0}, "train": {}, "max_length": 64, "typo": 1},
     "unlearn --params.typo: unknown setting"),
    ("localize", {"localizer": "oracle", "settings": {}, "ratio": "0.1", "seed": 7},
     "localize --params.ratio: expected a number, got a string '0.1'"),
    ("mix_eval", {"version": 1, "mix": {}}, "mix_eval --params were made for version 1 of the stage"),
    ("unlearn", {"objective": "l2_mlp", "block": {"lr": 1.0}, "train": {}, "max_length": 64},
     "unlearn: l2_mlp matches a target model's activations: give θr as --target"),
    ("unlearn_target", {"objective": "npo", "block": {"lr": 1.0}, "train": {}, "max_length": 64},
     "unlearn: --target is for objectives that match a target model; npo does not read one"),
])
def test_params_that_do_not_fit_the_stage_fail_naming_the_key_without_a_traceback(tmp_path, caplog, capsys, stage,
                                                                                   params, message):
    unlearn = ["--model", "m", "--mask", "k", "--data", "d", "--out", "o", "--log", "l"]
    args = {"unlearn": unlearn, "unlearn_target": [*unlearn, "--target", "t"],
            "localize": ["--model", "m", "--out", "o"],
            "mix_eval": ["--model", "m", "--reference", "r", "--data", "d", "--out", "o"]}[stage]
    assert main([stage.removesuffix("_target"), "--params", json.dumps(params), *args]) == 1
    assert message in caplog.text
    assert "Traceback" not in caplog.text + capsys.readouterr().err


def test_verbose_adds_the_traceback(caplog):
    assert main(["-v", "localize", "--params", json.dumps({"localizer": "oracel", "settings": {}, "ratio": 0.1,
                                                            "seed": 1}), "--model", "m", "--out", "o"]) == 1
    assert "unknown localizer 'oracel'; did you mean 'oracle'" in caplog.text and "Traceback" in caplog.text


def test_missing_input_fails_with_its_path(tmp_path, caplog):
    code = main(["localize", "--params", json.dumps({"localizer": "oracle", "settings": {}, "ratio": 0.1, "seed": 1}),
                 "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "t.safetensors")])
    assert code == 1
    assert f"missing file: {tmp_path / 'nope' / 'config.json'}" in caplog.text
    assert not (tmp_path / "t.safetensors").exists()
