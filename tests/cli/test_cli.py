"""The stage command line: help for every stage, clear failures on bad input."""

import json
import subprocess
import sys

import pytest

from unloc.cli import build_parser, main

STAGES = ["prepare-data", "pretrain", "finetune", "make-mask", "inject", "unlearn", "es", "reference-stats", "mix-eval", "table2", "figure", "sanity", "export"]


def test_every_stage_has_help(capsys):
    sub = next(a for a in build_parser()._actions if a.dest == "stage")
    assert sorted(sub.choices) == sorted(STAGES)
    for stage in STAGES:
        with pytest.raises(SystemExit) as e:
            main([stage, "--help"])
        assert e.value.code == 0
        assert "usage: unloc " + stage in capsys.readouterr().out


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "unloc.cli", "--help"], capture_output=True, text=True, check=True)
    assert "inject" in out.stdout


def test_params_must_be_a_json_object(capsys):
    with pytest.raises(SystemExit):
        main(["make-mask", "--params", "{ratio: 0.1}", "--model", "m", "--seed", "1",
              "--out-target", "t", "--out-random", "r"])
    assert "--params is not valid JSON" in capsys.readouterr().err


def test_missing_input_fails_with_its_path(tmp_path, caplog):
    code = main(["make-mask", "--params", json.dumps({"ratio": 0.1}), "--model", str(tmp_path / "nope"),
                 "--seed", "1", "--out-target", str(tmp_path / "t.safetensors"),
                 "--out-random", str(tmp_path / "r.safetensors")])
    assert code == 1
    assert f"missing file: {tmp_path / 'nope' / 'config.json'}" in caplog.text
    assert not (tmp_path / "t.safetensors").exists()


def test_make_mask_writes_disjoint_target_and_random(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"num_hidden_layers": 3, "intermediate_size": 40}))
    (model / "model.safetensors").write_bytes(b"not used")
    assert main(["make-mask", "--params", json.dumps({"ratio": 0.1}), "--model", str(model), "--seed", "7",
                 "--out-target", str(tmp_path / "t.safetensors"), "--out-random", str(tmp_path / "r.safetensors")]) == 0
    from unloc.masks import load_mask

    tgt, rdm = load_mask(tmp_path / "t.safetensors"), load_mask(tmp_path / "r.safetensors")
    assert tgt.count() == rdm.count() == 12
    assert not (tgt.flat() & rdm.flat()).any()
    assert tgt.metadata["seed"] == "7" and tgt.metadata["method"] == "target"
    assert len(tgt.metadata["source_hash"]) == 64
