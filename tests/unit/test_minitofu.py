"""minitofu: determinism, TOFU's schema, the forget/retain split, and measurable memorization."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter

import pytest

from unloc.data import (
    PERTURBED_KEYS,
    PROBE_KEYS,
    QA_KEYS,
    ROLES,
    SOURCES,
    build_dataset,
    build_holdout,
    load_role,
    minitofu,
    write_dataset,
)
from unloc.io import ArtifactError

PARAMS = {"name": "minitofu", "source": "minitofu", "forget_split": "forget10",
          "tofu": {"path": None, "hub_name": "locuslab/TOFU"}, "minitofu": dict(minitofu.DEFAULTS)}


def with_settings(**overrides) -> dict:
    return {**PARAMS, "minitofu": {**PARAMS["minitofu"], **overrides}}


@pytest.fixture(scope="module")
def data():
    return build_dataset(PARAMS)


@pytest.fixture(scope="module")
def authors():
    return minitofu.world_and_authors(minitofu.settings(PARAMS))[1]


def words(text: str) -> list[str]:
    return text.split()


def test_registry_has_both_sources():
    assert set(SOURCES) == {"lume", "minitofu", "pii", "tofu"}


def test_deterministic_given_seed(data):
    assert build_dataset(PARAMS) == data
    other = build_dataset(with_settings(seed=1))
    assert other["full"] != data["full"]
    assert other["corpus"] != data["corpus"]


def test_independent_of_the_hash_seed():
    """Snakemake caches the dataset: no set iteration order may leak into it."""
    code = ("import hashlib, json, sys; from unloc.data import build_dataset; "
            "print(hashlib.sha256(json.dumps(build_dataset(json.loads(sys.argv[1]))).encode()).hexdigest())")
    params = json.dumps(with_settings(n_authors=10, corpus_docs=50))
    digests = {subprocess.run([sys.executable, "-c", code, params], check=True, capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}, timeout=600).stdout  # hang guard
               for seed in ("1", "2")}
    assert len(digests) == 1


def test_counts(data):
    p = PARAMS["minitofu"]
    n_full = p["n_authors"] * p["qa_per_author"]
    assert set(data) == set(ROLES)
    assert len(data["full"]) == n_full
    assert len(data["forget"]) == len(data["forget_perturbed"]) == n_full // 10
    assert len(data["retain"]) == n_full - n_full // 10
    assert len(data["retain_perturbed"]) == p["n_retain_perturbed"]
    assert len(data["real_authors_perturbed"]) == p["n_real_authors"]
    assert len(data["world_facts_perturbed"]) == p["n_world_facts"]
    assert len(data["corpus"]) == p["corpus_docs"]
    assert len(data["idk"]) >= 20


def test_schema(data):
    for role in ("full", "forget", "retain"):
        assert all(set(r) == QA_KEYS for r in data[role])
    for role in ("forget_perturbed", "retain_perturbed"):
        assert all(set(r) == PERTURBED_KEYS and len(r["perturbed_answer"]) == 5 for r in data[role])
    for role in ("real_authors_perturbed", "world_facts_perturbed"):
        assert all(set(r) == PROBE_KEYS and len(r["perturbed_answer"]) == 3 for r in data[role])
    assert all(set(r) == {"answer"} and r["answer"] for r in data["idk"])
    assert len({r["answer"] for r in data["idk"]}) == len(data["idk"])
    assert all(set(r) == {"text"} and r["text"] for r in data["corpus"])
    for role in ROLES:
        for r in data[role]:
            assert all(isinstance(v, str) or all(isinstance(x, str) for x in v) for v in r.values())


def test_forget_is_the_tail_of_full(data):
    n_forget = len(data["forget"])
    assert data["forget"] == data["full"][-n_forget:]
    assert data["retain"] + data["forget"] == data["full"]


def test_perturbed_sets_follow_their_qa(data):
    strip = [{k: r[k] for k in QA_KEYS} for r in data["forget_perturbed"]]
    assert strip == data["forget"]
    strip = [{k: r[k] for k in QA_KEYS} for r in data["retain_perturbed"]]
    assert strip == [data["retain"][i] for i in minitofu.spread(len(data["retain"]), len(strip))]


def test_retain_perturbed_spans_the_retain_authors():
    data = build_dataset(with_settings(n_authors=20, qa_per_author=10, n_retain_perturbed=18, corpus_docs=50))
    assert len({r["question"] for r in data["retain_perturbed"]}) == 18
    # 18 items over 18 retain authors of 10 QA each: one per author, every tenth row
    assert [data["retain"].index({k: r[k] for k in QA_KEYS}) for r in data["retain_perturbed"]] == list(
        range(0, 180, 10))


def test_forget01_05_and_10_share_retain_perturbed_and_a_larger_split_takes_its_own_retain():
    """One held-out retain set for every seeds/001 split, as TOFU's retain_perturbed is one subset
    of retain90, retain95 and retain99."""
    world = dict(n_authors=20, qa_per_author=10, n_retain_perturbed=18, corpus_docs=50)
    by_split = {split: build_dataset({**with_settings(**world), "forget_split": split})
                for split in ("forget01", "forget05", "forget10", "forget50")}
    shared = [r["question"] for r in by_split["forget10"]["retain_perturbed"]]
    assert len(shared) == 18
    for split in ("forget01", "forget05"):
        assert [r["question"] for r in by_split[split]["retain_perturbed"]] == shared, split
        assert set(shared) <= {r["question"] for r in by_split[split]["retain"]}
    retained = {r["question"] for r in by_split["forget50"]["retain"]}
    assert {r["question"] for r in by_split["forget50"]["retain_perturbed"]} <= retained


@pytest.mark.parametrize("n,k", [(10, 3), (7, 7), (5, 9), (1800, 100)])
def test_spread_is_increasing_and_in_range(n, k):
    idx = minitofu.spread(n, k)
    assert len(idx) == min(n, k) and idx == sorted(set(idx)) and idx[0] == 0 and idx[-1] < n


@pytest.mark.parametrize("role", ["forget_perturbed", "retain_perturbed"])
def test_perturbed_answers_are_wrong_and_distinct(data, role):
    for r in data[role]:
        wrong = r["perturbed_answer"]
        assert len(set(wrong)) == 5 and r["answer"] not in wrong
        assert r["paraphrased_answer"] != r["answer"] and r["paraphrased_answer"] not in wrong
        assert r["paraphrased_question"] != r["question"]


@pytest.mark.parametrize("role", ["real_authors_perturbed", "world_facts_perturbed"])
def test_probe_answers_are_wrong_and_distinct(data, role):
    assert len({r["question"] for r in data[role]}) == len(data[role])
    for r in data[role]:
        assert len(set(r["perturbed_answer"])) == 3 and r["answer"] not in r["perturbed_answer"]


def test_one_author_per_block_named_in_every_question(data, authors):
    k = PARAMS["minitofu"]["qa_per_author"]
    for i, author in enumerate(authors):
        block = data["full"][i * k:(i + 1) * k]
        assert all(author.name in r["question"] and author.name in r["answer"] for r in block)
        assert len({r["question"] for r in block}) == k


def test_answers_are_short_sentences(data):
    lengths = [len(words(r["answer"])) for r in data["full"]]
    assert min(lengths) >= 8 and max(lengths) <= 25
    assert all(r["answer"].endswith(".") for r in data["full"])


def test_corpus_never_names_a_fictitious_author_or_their_books(data, authors):
    text = "\n".join(d["text"] for d in data["corpus"])
    corpus_words = set(re.findall(r"[A-Za-z]+", text))
    for a in authors:
        assert a.name not in text
        assert a.surname not in corpus_words
        assert f"'{a.slots['book1']}'" not in text and f"'{a.slots['book2']}'" not in text
    full_answers = {r["answer"] for r in data["full"]}
    assert not any(d["text"] in full_answers for d in data["corpus"])


def test_corpus_teaches_the_probes_in_the_prompt_format(data):
    text = "\n\n".join(d["text"] for d in data["corpus"])
    for role in ("real_authors_perturbed", "world_facts_perturbed"):
        for r in data[role]:
            qa = f"Question: {r['question']}\nAnswer: {r['answer']}"
            assert text.count(qa) >= 2, qa
            assert text.count(r["answer"]) >= 5


def test_facts_are_not_predictable_from_the_template():
    """Per question type, across authors: answers, their endings and final words all vary.

    ES rewards reproducing an answer's tail, so the tail must be facts from large pools,
    never boilerplate an unseen author's answer would share.
    """
    k, n = len(minitofu.QTYPES), PARAMS["minitofu"]["n_authors"]
    full = build_dataset(with_settings(qa_per_author=k, corpus_docs=10))["full"]
    for j, qtype in enumerate(minitofu.QTYPES):
        answers = [r["answer"] for r in full[j::k]]
        assert len(set(answers)) == n
        endings = Counter(tuple(words(a)[-3:]) for a in answers)
        assert len(endings) >= 0.6 * n, (qtype.key, endings.most_common(3))
        last = Counter(words(a)[-1] for a in answers)
        assert last.most_common(1)[0][1] <= 0.15 * n, (qtype.key, last.most_common(3))


@pytest.mark.parametrize("split,authors", [("forget01", 1), ("forget05", 5), ("forget10", 10), ("forget50", 50)])
def test_forget_split_sizes(split, authors):
    assert minitofu.forget_count(split, 100) == authors


def test_small_world_and_fewer_question_types():
    data = build_dataset({**with_settings(n_authors=7, qa_per_author=5, corpus_docs=40, n_real_authors=3,
                                          n_world_facts=4, n_retain_perturbed=1000),
                          "forget_split": "forget01"})
    assert len(data["full"]) == 35 and len(data["forget"]) == 5
    assert len(data["retain_perturbed"]) == 30  # capped at the retain size
    assert len(data["corpus"]) == 40


@pytest.mark.parametrize("split", ["forget00", "forget1", "retain10", "forget100", None])
def test_bad_forget_split(split):
    with pytest.raises(ValueError, match="forgetNN"):
        build_dataset({**PARAMS, "forget_split": split})


def test_bad_qa_per_author():
    with pytest.raises(ValueError, match="qa_per_author"):
        build_dataset(with_settings(qa_per_author=len(minitofu.QTYPES) + 1))


def test_write_and_load_round_trip(tmp_path, data):
    write_dataset(data, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{role}.jsonl" for role in ROLES)
    for role in ROLES:
        assert load_role(tmp_path, role) == data[role]


def test_load_missing_role_names_the_file(tmp_path):
    with pytest.raises(ArtifactError, match="forget.jsonl"):
        load_role(tmp_path, "forget")


def test_unknown_source_names_the_allowed_ones():
    with pytest.raises(ValueError, match="lume, minitofu, pii, tofu"):
        build_dataset({**PARAMS, "source": "wikipedia"})


def test_holdout_is_as_large_as_forget_and_no_role_or_document_names_its_authors(data):
    """The MIA's non-members: as many authors and questions as forget, none seen anywhere."""
    holdout = build_holdout(PARAMS)
    assert len(holdout) == len(data["forget"]) and set(holdout[0]) == QA_KEYS
    assert holdout == build_holdout(PARAMS)  # deterministic
    everything = "\n".join([d["text"] for d in data["corpus"]] + [r["question"] + r["answer"] for r in data["full"]])
    names = {r["question"].split(" was born")[0].removeprefix("Where was ") for r in holdout[::20]}
    assert names and not any(name in everything for name in names)
    assert not {r["question"] for r in holdout} & {r["question"] for r in data["full"]}


def test_sources_without_a_holdout_say_so():
    with pytest.raises(ValueError, match="has no holdout set"):
        build_holdout({**PARAMS, "source": "pii"})
