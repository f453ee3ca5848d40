"""`unloc eval` end to end on a tiny instruct-style stand-in (chat template, pad = EOS): the
files open-unlearning's scripts read, a reference known by construction, reruns that write
identical JSON, and clear failures on bad input."""

import csv
import json

import pytest

from unloc import io
from unloc.cli import main
from unloc.data import build_dataset, build_holdout, write_dataset
from unloc.metrics.suite import EVAL_METRICS
from unloc.models import build_tiny_llama, train_tokenizer

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
DATA = {"name": "t", "source": "minitofu", "forget_split": "forget10",
        "minitofu": {"seed": 0, "n_authors": 10, "qa_per_author": 4, "n_retain_perturbed": 4,
                     "n_real_authors": 4, "n_world_facts": 4, "corpus_docs": 20}}
FAST = ["--max-new-tokens", "4", "--batch-size", "8"]


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    roles = build_dataset(DATA)
    write_dataset(roles, root / "data")
    io.write_jsonl(root / "data" / "holdout.jsonl", build_holdout(DATA))
    texts = [d["text"] for d in roles["corpus"]] + [r["question"] + " " + r["answer"] for r in roles["full"]]
    tok = train_tokenizer(texts, vocab_size=400)
    tok.chat_template = CHAT_TEMPLATE
    tok.pad_token = tok.eos_token  # as SmolLM2's: each end of turn is a pad token to open-unlearning
    model = build_tiny_llama({"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 4,
                              "vocab_size": 400, "max_length": 128}, tok, seed=0)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    return root


def run_eval(stand_in, out, *extra) -> int:
    return main(["--threads", "1", "eval", str(stand_in / "model"), "--data", str(stand_in / "data"), *FAST,
                 "--out", str(out), *map(str, extra)])


@pytest.fixture(scope="module")
def evaluated(stand_in):
    out = stand_in / "out"
    assert run_eval(stand_in, out) == 0
    return out


def test_help_lists_the_options_and_every_metric(capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for option in ("--data", "--forget-split", "--holdout-split", "--reference", "--compat", "--system-prompt",
                   "--max-new-tokens", "--batch-size", "--out", "open_unlearning"):
        assert option in out
    assert all(name in out.replace("\n", " ").replace("  ", " ") for name in ("privleak", "mia_zlib"))


def test_eval_writes_open_unlearnings_files_and_prints_a_summary(stand_in, evaluated, capsys):
    logs = json.loads((evaluated / "TOFU_EVAL.json").read_text())
    assert list(logs) == sorted(EVAL_METRICS.names())
    forget = logs["forget_Q_A_Prob"]["value_by_index"]
    assert list(forget) == ["0", "1", "2", "3"] and set(forget["0"]) == {"prob", "avg_loss"}
    assert set(logs["mia_min_k"]) == {"forget", "holdout", "auc", "agg_value"}
    summary = json.loads((evaluated / "TOFU_SUMMARY.json").read_text())
    assert "forget_quality" not in summary  # no reference: null, left out
    assert summary["privleak"] == pytest.approx((0.5 - (1 - summary["mia_min_k"])) / -0.5 * 100)
    with open(evaluated / "TOFU_ITEMS.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["split"] for r in rows} == {"forget_perturbed", "retain_perturbed", "real_authors_perturbed",
                                          "world_facts_perturbed", "holdout"}
    config = json.loads((evaluated / "eval_config.json").read_text())
    assert config["settings"]["conventions"]["name"] == "unloc" and config["items"]["holdout"] == 4
    assert run_eval(stand_in, stand_in / "again") == 0
    assert "model_utility" in capsys.readouterr().out  # the summary table
    assert (stand_in / "again" / "TOFU_EVAL.json").read_bytes() == (evaluated / "TOFU_EVAL.json").read_bytes()


@pytest.mark.parametrize("reference", ["json", "model"])
def test_the_model_as_its_own_reference_has_fq_1_and_privleak_0(stand_in, evaluated, tmp_path, reference):
    """Identical truth ratios: the KS p-value is 1; identical MIA AUC: no privacy leak."""
    given = evaluated / "TOFU_EVAL.json" if reference == "json" else stand_in / "model"
    assert run_eval(stand_in, tmp_path, "--reference", given) == 0
    summary = json.loads((tmp_path / "TOFU_SUMMARY.json").read_text())
    assert summary["forget_quality"] == 1.0
    assert summary["privleak"] == pytest.approx(0.0, abs=1e-6)


def test_compat_changes_the_numbers_and_is_recorded(stand_in, evaluated, tmp_path):
    assert run_eval(stand_in, tmp_path, "--compat", "open_unlearning") == 0
    ours = json.loads((evaluated / "TOFU_SUMMARY.json").read_text())
    theirs = json.loads((tmp_path / "TOFU_SUMMARY.json").read_text())
    assert theirs["forget_Q_A_Prob"] != ours["forget_Q_A_Prob"]
    assert json.loads((tmp_path / "eval_config.json").read_text())["settings"]["conventions"]["name"] == \
        "open_unlearning"


def test_without_a_holdout_split_the_mia_is_left_out(stand_in, tmp_path, caplog):
    assert run_eval(stand_in, tmp_path, "--holdout-split", "none") == 0
    logs = json.loads((tmp_path / "TOFU_EVAL.json").read_text())
    assert "mia_min_k" not in logs and "privleak" not in logs and "model_utility" in logs
    assert "no holdout split" in caplog.text


@pytest.mark.parametrize("args,message", [
    (["--data", "/nonexistent/tofu"], "--data /nonexistent/tofu: not a TOFU folder"),
    (["--metrics", "forget_Q_A_Prb"], "unknown eval metric 'forget_Q_A_Prb'; did you mean 'forget_Q_A_Prob'?"),
    (["--holdout-split", "none", "--metrics", "privleak"], "--metrics: privleak needs the split(s)"),
    (["--batch-size", "0"], "--batch-size: must be at least 1"),
    (["--reference", "missing.json"], "missing file: missing.json"),
])
def test_bad_input_fails_naming_it_without_a_traceback(stand_in, tmp_path, caplog, capsys, args, message):
    data = [] if "--data" in args else ["--data", str(stand_in / "data")]
    code = main(["eval", str(stand_in / "model"), *data, *args, "--out", str(tmp_path / "out")])
    assert code == 1
    assert message in caplog.text
    assert "Traceback" not in caplog.text + capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_reference_without_truth_ratios_is_refused(stand_in, tmp_path, caplog):
    bad = tmp_path / "logs.json"
    bad.write_text(json.dumps({"model_utility": {"agg_value": 0.5}}))
    assert run_eval(stand_in, tmp_path / "out", "--reference", bad) == 1
    assert "no forget_truth_ratio.value_by_index (not a TOFU_EVAL.json)" in caplog.text
