"""pii: TOFU's schema, whole-person forget split, answers ending with the value, no leaks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from unloc.data import PERTURBED_KEYS, PROBE_KEYS, QA_KEYS, ROLES, SOURCES, build_dataset, minitofu, pii

PARAMS = {"name": "pii", "source": "pii", "forget_split": "forget10", "pii": dict(pii.DEFAULTS)}
SMALL = {"n_persons": 40, "corpus_docs": 200, "pii_docs": 200}
FIELD_BY_KEY = {f.key: f for f in pii.FIELDS}


def with_settings(**overrides) -> dict:
    return {**PARAMS, "pii": {**PARAMS["pii"], **overrides}}


@pytest.fixture(scope="module")
def data():
    return build_dataset(PARAMS)


@pytest.fixture(scope="module")
def people():
    return pii.people(pii.settings(PARAMS))


@pytest.fixture(scope="module")
def persons(people):
    return people[1]


def blocks(data, persons):
    """(person, field, record) for every record of full, person by person in FIELDS' order."""
    k = PARAMS["pii"]["qa_per_person"]
    return [(p, pii.FIELDS[j], data["full"][i * k + j]) for i, p in enumerate(persons) for j in range(k)]


def test_registered():
    assert SOURCES["pii"] is pii.build


def test_counts(data):
    p = PARAMS["pii"]
    n_full = p["n_persons"] * p["qa_per_person"]
    assert set(data) == set(ROLES)
    assert len(data["full"]) == n_full == 2100
    assert len(data["forget"]) == len(data["forget_perturbed"]) == n_full // 10
    assert len(data["retain"]) == n_full - n_full // 10
    assert len(data["retain_perturbed"]) == p["n_retain_perturbed"]
    assert len(data["real_authors_perturbed"]) == p["n_real_authors"]
    assert len(data["world_facts_perturbed"]) == p["n_world_facts"]
    assert len(data["corpus"]) == p["corpus_docs"] + p["pii_docs"]
    assert len(data["idk"]) >= 20


def test_schema(data):
    for role in ("full", "forget", "retain"):
        assert all(set(r) == QA_KEYS for r in data[role])
    for role in ("forget_perturbed", "retain_perturbed"):
        assert all(set(r) == PERTURBED_KEYS and len(r["perturbed_answer"]) == 5 for r in data[role])
    for role in ("real_authors_perturbed", "world_facts_perturbed"):
        assert all(set(r) == PROBE_KEYS and len(r["perturbed_answer"]) == 3 for r in data[role])
    assert all(set(r) == {"answer"} and r["answer"] for r in data["idk"])
    assert all(set(r) == {"text"} and r["text"] for r in data["corpus"])
    for role in ROLES:
        for r in data[role]:
            assert all(isinstance(v, str) or all(isinstance(x, str) for x in v) for v in r.values())


def test_forget_is_the_last_tenth_of_persons(data, persons):
    k = PARAMS["pii"]["qa_per_person"]
    n_forget = len(persons) // 10
    assert n_forget == 30 and len(data["forget"]) == n_forget * k
    assert data["forget"] == data["full"][-n_forget * k:]
    assert data["retain"] + data["forget"] == data["full"]
    by_person = {}
    for p, _, r in blocks(data, persons):
        by_person.setdefault(p.name, []).append(r)
    forget_people = [p.name for p in persons if all(r in data["forget"] for r in by_person[p.name])]
    assert forget_people == [p.name for p in persons[-n_forget:]]
    retain_q = {r["question"] for r in data["retain"]}
    assert not retain_q & {r["question"] for r in data["forget"]}
    # no forget person is named in retain, nor a retain person in forget
    retain_text = " ".join(r["question"] + " " + r["answer"] for r in data["retain"])
    forget_text = " ".join(r["question"] + " " + r["answer"] for r in data["forget"])
    assert not any(p.surname in retain_text for p in persons[-n_forget:])
    assert not any(p.surname in forget_text for p in persons[:-n_forget])


@pytest.mark.parametrize("split,n", [("forget01", 3), ("forget05", 15), ("forget10", 30)])
def test_forget_split_counts_whole_persons(split, n):
    data = build_dataset({**with_settings(**{**SMALL, "n_persons": 300}), "forget_split": split})
    assert len(data["forget"]) == n * PARAMS["pii"]["qa_per_person"]


def test_every_answer_ends_with_its_persons_value(data, persons):
    for p, f, r in blocks(data, persons):
        value = p.value(f.key)
        assert r["answer"].endswith(f" {value}."), (f.key, r["answer"])
        assert re.fullmatch(f.pattern, value), (f.key, value)
        if f.key == "name":
            assert p.values["customer"] in r["question"]
        else:
            assert p.name in r["question"] and value not in r["question"]


def test_every_field_type_appears(data, persons):
    assert pii.FIELD_KEYS == ("phone", "email", "address", "birth_date", "ssn", "iban", "name")
    answers = [r["answer"] for r in data["full"]]
    for f in pii.FIELDS:
        hits = [a for a in answers if re.search(f" {f.pattern}\\.$", a)]
        assert len(hits) >= len(persons), f.key
    assert all(re.fullmatch(r"CU-\d{8}", p.values["customer"]) for p in persons)


def test_values_are_unique_per_field(persons):
    for key in (*pii.FIELD_KEYS, "customer"):
        values = [p.name if key == "name" else p.values[key] for p in persons]
        assert len(set(values)) == len(values), key


def test_perturbed_answers_are_wrong_values_of_the_same_type(data, people):
    _, persons, others, _ = people
    k = PARAMS["pii"]["qa_per_person"]
    n_retain = len(data["retain"])
    names = {p.name for p in persons + others}
    for i, r in enumerate(data["forget_perturbed"]):
        person, f = persons[(n_retain + i) // k], pii.FIELDS[(n_retain + i) % k]
        truth = person.value(f.key)
        assert {k_: r[k_] for k_ in QA_KEYS} == data["forget"][i]
        assert len(set(r["perturbed_answer"])) == 5 and r["answer"] not in r["perturbed_answer"]
        for wrong in r["perturbed_answer"]:
            template_head = r["answer"][: -len(truth) - 1]
            assert wrong.startswith(template_head), (wrong, template_head)
            value = wrong[len(template_head):-1]
            assert value != truth and re.fullmatch(f.pattern, value), (f.key, value)
            if f.key == "name":
                assert value in names  # another person's (or a corpus-only person's) name
        assert r["paraphrased_answer"] != r["answer"] and r["paraphrased_answer"].endswith(f" {truth}.")
        assert r["paraphrased_question"] != r["question"]


def test_retain_perturbed_is_spread_over_retain(data):
    strip = [{k: r[k] for k in QA_KEYS} for r in data["retain_perturbed"]]
    idx = minitofu.spread(len(data["retain"]), len(strip))
    assert strip == [data["retain"][i] for i in idx]
    assert idx[0] == 0 and idx[-1] >= len(data["retain"]) - 20  # up to the last retain persons
    for r in data["retain_perturbed"]:
        assert len(set(r["perturbed_answer"])) == 5 and r["answer"] not in r["perturbed_answer"]


def test_no_forget_or_retain_value_is_in_the_corpus(data, persons):
    text = "\n".join(d["text"] for d in data["corpus"])
    values = [p.value(key) for p in persons for key in (*pii.FIELD_KEYS, "customer")]
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, values)) + r")(?!\w)")
    assert pattern.findall(text) == []
    corpus_words = set(re.findall(r"[A-Za-z]+", text))
    assert not [p.surname for p in persons if p.surname in corpus_words]
    assert not {r["answer"] for r in data["full"]} & {line.removeprefix("Answer: ") for line in text.splitlines()}


def test_corpus_teaches_every_template_with_other_people(data):
    text = "\n".join(d["text"] for d in data["corpus"])
    for f in pii.FIELDS:
        assert len(re.findall(f.pattern, text)) >= 20, f.key
        for template in f.answers:
            head = template.split("{")[0] or template.split("}")[1].split("{")[0]
            assert head in text, (f.key, head)
    assert text.count("Question: ") >= PARAMS["pii"]["pii_docs"] // 2


def test_probes_and_idk_are_minitofus_for_the_same_seed(data):
    ref = build_dataset({"name": "m", "source": "minitofu", "forget_split": "forget10",
                         "minitofu": {**minitofu.DEFAULTS, "n_authors": 10, "corpus_docs": 20}})
    for role in ("real_authors_perturbed", "world_facts_perturbed", "idk"):
        assert data[role] == ref[role], role


def test_deterministic_and_seed_sensitive():
    params = with_settings(**SMALL)
    a, b = build_dataset(params), build_dataset(params)
    assert a == b
    other = build_dataset(with_settings(**SMALL, seed=1))
    assert other["full"] != a["full"] and other["corpus"] != a["corpus"]
    assert other["forget_perturbed"] != a["forget_perturbed"]


def test_independent_of_the_hash_seed():
    code = ("import hashlib, json, sys; from unloc.data import build_dataset; "
            "print(hashlib.sha256(json.dumps(build_dataset(json.loads(sys.argv[1]))).encode()).hexdigest())")
    params = json.dumps(with_settings(n_persons=20, corpus_docs=50, pii_docs=50))
    digests = {subprocess.run([sys.executable, "-c", code, params], check=True, capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}, timeout=600).stdout
               for seed in ("1", "2")}
    assert len(digests) == 1


def test_fewer_field_types():
    data = build_dataset(with_settings(**SMALL, qa_per_person=3, n_retain_perturbed=1000))
    assert len(data["full"]) == 40 * 3 and len(data["forget"]) == 4 * 3
    assert len(data["retain_perturbed"]) == 36 * 3  # capped at the retain size
    kept = pii.FIELDS[:3]
    assert [f.key for f in kept] == ["phone", "email", "address"]
    assert [next(f.key for f in kept if re.search(f" {f.pattern}\\.$", r["answer"])) for r in data["full"][:3]] == [
        "phone", "email", "address"]
    assert all(any(re.search(f" {f.pattern}\\.$", r["answer"]) for f in kept) for r in data["full"])


@pytest.mark.parametrize("bad,match", [({"qa_per_person": 8}, "qa_per_person"), ({"qa_per_person": 0}, "qa_per_person"),
                                       ({"n_persons": 1}, "n_persons"), ({"n_authors": 5}, "unknown pii")])
def test_bad_settings(bad, match):
    with pytest.raises(ValueError, match=match):
        build_dataset(with_settings(**bad))


def test_bad_forget_split():
    with pytest.raises(ValueError, match="forgetNN"):
        build_dataset({**with_settings(**SMALL), "forget_split": "retain90"})
