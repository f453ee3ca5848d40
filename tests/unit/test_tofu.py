"""The TOFU loader, on the local copy of the benchmark in /work/shared/data/tofu."""

from __future__ import annotations

from pathlib import Path

import pytest

from unloc.data import ROLES, build_dataset, tofu
from unloc.io import ArtifactError

TOFU_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "tofu"
PERTURBED_KEYS = {"question", "answer", "paraphrased_answer", "perturbed_answer", "paraphrased_question"}

needs_tofu = pytest.mark.skipif(not (TOFU_DIR / "full.json").is_file(),
                                reason=f"no local TOFU copy at {TOFU_DIR}")


def params(forget_split="forget10", path=TOFU_DIR) -> dict:
    return {"name": "tofu", "source": "tofu", "forget_split": forget_split,
            "tofu": {"path": None if path is None else str(path), "hub_name": "locuslab/TOFU"}}


@pytest.fixture(scope="module")
def data():
    return build_dataset(params())


@needs_tofu
def test_counts(data):
    assert set(data) == set(ROLES)
    sizes = {role: len(records) for role, records in data.items()}
    assert sizes == {"full": 4000, "forget": 400, "retain": 3600, "forget_perturbed": 400,
                     "retain_perturbed": 400, "real_authors_perturbed": 100, "world_facts_perturbed": 117,
                     "idk": 100, "corpus": 3600 + 100 + 117}


@needs_tofu
def test_fields(data):
    for role in ("full", "forget", "retain"):
        assert all(set(r) == {"question", "answer"} for r in data[role])
    for role in ("forget_perturbed", "retain_perturbed"):
        assert all(set(r) == PERTURBED_KEYS and len(r["perturbed_answer"]) == 5 for r in data[role])
    for role in ("real_authors_perturbed", "world_facts_perturbed"):
        assert all(set(r) == {"question", "answer", "perturbed_answer"} and len(r["perturbed_answer"]) == 3
                   for r in data[role])
    assert all(set(r) == {"answer"} and r["answer"] == r["answer"].strip() and r["answer"] for r in data["idk"])
    assert "’" in "".join(r["answer"] for r in data["idk"])  # read as UTF-8 text, not JSON


@needs_tofu
def test_forget_and_retain_split_full(data):
    assert data["forget"] == data["full"][-400:]
    assert data["retain"] == data["full"][:3600]
    assert [{k: r[k] for k in ("question", "answer")} for r in data["forget_perturbed"]] == data["forget"]


@needs_tofu
def test_corpus_is_retain_and_probe_qa_in_prompt_format(data):
    first = data["retain"][0]
    assert data["corpus"][0] == {"text": f"Question: {first['question']}\nAnswer: {first['answer']}"}
    forget_answers = {r["answer"] for r in data["forget"]}
    assert not any(d["text"].split("\nAnswer: ", 1)[1] in forget_answers for d in data["corpus"])


def test_forget01_role_mapping():
    names = tofu.config_names("forget01")
    assert names["forget"] == "forget01" and names["retain"] == "retain99"
    assert names["forget_perturbed"] == "forget01_perturbed"
    assert tofu.config_names("forget05")["retain"] == "retain95"


@needs_tofu
def test_forget01_from_the_local_copy():
    data = build_dataset(params("forget01"))
    assert len(data["forget"]) == 40 and len(data["retain"]) == 3960
    assert data["forget"] == data["full"][-40:]


def test_missing_folder_names_it(tmp_path):
    missing = tmp_path / "no_such_tofu"
    with pytest.raises(ArtifactError, match="no_such_tofu"):
        build_dataset(params(path=missing))


def test_missing_config_names_the_file(tmp_path):
    (tmp_path / "full.json").write_text('{"question": "q", "answer": "a"}\n')
    with pytest.raises(ArtifactError, match="forget10.json"):
        build_dataset(params(path=tmp_path))


@pytest.mark.parametrize("split", ["forget20", "forget1", "retain90"])
def test_bad_forget_split_names_the_allowed_ones(split):
    with pytest.raises(ValueError, match="forget01, forget05, forget10"):
        build_dataset(params(split))
