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


def params(forget_split="forget10", path=TOFU_DIR, **cuts) -> dict:
    return {"name": "tofu", "source": "tofu", "forget_split": forget_split,
            "tofu": {"path": None if path is None else str(path), "hub_name": "locuslab/TOFU", **cuts}}


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


@needs_tofu
def test_retain_items_keeps_whole_authors_and_their_probes():
    cut = build_dataset(params("forget01", retain_items=100))
    whole = build_dataset(params("forget01"))
    assert cut["retain"] == whole["retain"][:100]
    assert cut["full"] == whole["retain"][:100] + whole["forget"]
    kept = {r["question"] for r in cut["retain"]}
    assert cut["retain_perturbed"] == [r for r in whole["retain_perturbed"] if r["question"] in kept]
    assert len(cut["retain_perturbed"]) == 100  # TOFU's retain_perturbed holds all 20 items of authors 0-4
    for role in ("forget", "forget_perturbed", "real_authors_perturbed", "world_facts_perturbed", "idk"):
        assert cut[role] == whole[role]
    assert len(cut["corpus"]) == 100 + 100 + 117


@needs_tofu
def test_utility_items_spreads_over_each_probe_split(data):
    cut = build_dataset(params(utility_items=10))
    for role in tofu.UTILITY_ROLES:
        n = len(data[role])
        assert cut[role] == [data[role][i * n // 10] for i in range(10)]
    assert cut["real_authors_perturbed"][1] == data["real_authors_perturbed"][10]
    assert cut["world_facts_perturbed"][-1] == data["world_facts_perturbed"][105]
    for role in ("full", "forget", "retain", "forget_perturbed"):
        assert cut[role] == data[role]
    assert build_dataset(params(utility_items=1000))["world_facts_perturbed"] == data["world_facts_perturbed"]


def test_evenly_spaced_known_cases():
    items = [{"i": i} for i in range(10)]
    assert [r["i"] for r in tofu.evenly_spaced(items, 4)] == [0, 2, 5, 7]
    assert [r["i"] for r in tofu.evenly_spaced(items, 1)] == [0]
    assert tofu.evenly_spaced(items, 10) == items


def test_retain_items_that_keep_no_probe_say_so():
    def qa(q):
        return {"question": q, "answer": "a"}
    roles = {"retain": [qa("r1"), qa("r2")], "forget": [qa("f")], "full": [qa("r1"), qa("r2"), qa("f")],
             "retain_perturbed": [qa("r2")]}
    with pytest.raises(ValueError, match="retain_items = 1 keeps no item of retain_perturbed"):
        tofu.subsample(roles, retain_items=1, utility_items=None)


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
