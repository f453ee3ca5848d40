"""lume: a local LUME copy read as TOFU's roles, Task 2 only, with clear errors."""

from __future__ import annotations

import json

import pytest

from unloc.data import PERTURBED_KEYS, PROBE_KEYS, QA_KEYS, ROLES, SOURCES, build_dataset, lume
from unloc.io import ArtifactError

MINITOFU = {"corpus_docs": 30}  # the stand-in world, small

PHONES = {"Ada Brook": "555-201-0001", "Ben Coll": "555-201-0002", "Cy Dunn": "555-201-0003",
          "Di Eames": "555-201-0004", "Ed Fyfe": "555-201-0005", "Flo Gray": "555-201-0006"}
FORGET_PEOPLE, RETAIN_PEOPLE = ("Ada Brook", "Ben Coll"), ("Cy Dunn", "Di Eames", "Ed Fyfe", "Flo Gray")


def task2(name: str, i: int) -> list[dict]:
    """Three Task 2 records about one person: two QA items and a sentence completion."""
    first = name.split()[0].lower()
    return [
        {"id": f"{first}qa1", "input": f"What is the phone number of {name}?", "output": PHONES[name],
         "task": "Task2", "split": "x"},
        {"id": f"{first}qa2", "input": f"What is the email address of {name}?", "output": f"{first}@mail.test",
         "task": "Task2"},
        {"id": f"{first}sc1", "input": f"{name} was born in 19{60 + i}. {name} can be reached at the e-mail address",
         "output": f"{first}@mail.test. Home: {i} Elm Street.", "task": "Task2"},
    ]


def other_tasks(tag: str) -> list[dict]:
    return [{"id": f"{tag}1", "input": f"Once upon a time ({tag})", "output": f"DROP-{tag}-creative", "task": "Task1"},
            {"id": f"{tag}3", "input": f"The river ({tag})", "output": f"DROP-{tag}-pretraining", "task": "Task3"}]


FORGET = other_tasks("f")[:1] + [r for i, n in enumerate(FORGET_PEOPLE) for r in task2(n, i)] + other_tasks("f")[1:]
RETAIN = [r for i, n in enumerate(RETAIN_PEOPLE, 2) for r in task2(n, i)] + other_tasks("r")


def write(root, records_by_split: dict[str, list[dict]]):
    root.mkdir(parents=True, exist_ok=True)
    for split, records in records_by_split.items():
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "\n", encoding="utf-8")
    return root


def params(path, **lume_opts) -> dict:
    return {"name": "lume", "source": "lume", "forget_split": "forget10", "lume": {"path": str(path), **lume_opts},
            "minitofu": MINITOFU}


def expected(records: list[dict]) -> list[dict]:
    return [{"question": r["input"], "answer": r["output"]} for r in records if r["task"] == "Task2"]


@pytest.fixture
def folder(tmp_path):
    return write(tmp_path / "lume", {"forget": FORGET, "retain": RETAIN})


@pytest.fixture
def data(folder):
    return build_dataset(params(folder))


def test_registered():
    assert SOURCES["lume"] is lume.build


def test_question_answer_mapping_and_task2_only(data):
    assert data["forget"] == expected(FORGET) and len(data["forget"]) == 6
    assert data["retain"] == expected(RETAIN) and len(data["retain"]) == 12
    assert data["forget"][0] == {"question": "What is the phone number of Ada Brook?", "answer": "555-201-0001"}
    assert data["full"] == data["retain"] + data["forget"]
    dumped = json.dumps(data)
    assert "DROP-" not in dumped and "Once upon a time" not in dumped and "The river (" not in dumped


def test_every_role_has_tofus_schema(data):
    assert set(data) == set(ROLES)
    for role in ("full", "forget", "retain"):
        assert data[role] and all(set(r) == QA_KEYS for r in data[role])
    for role in ("forget_perturbed", "retain_perturbed"):
        assert data[role] and all(set(r) == PERTURBED_KEYS and len(r["perturbed_answer"]) == 5 for r in data[role])
    for role in ("real_authors_perturbed", "world_facts_perturbed"):
        assert data[role] and all(set(r) == PROBE_KEYS and len(r["perturbed_answer"]) == 3 for r in data[role])
    assert data["idk"] and all(set(r) == {"answer"} for r in data["idk"])
    assert data["corpus"] and all(set(r) == {"text"} for r in data["corpus"])
    for role in ROLES:
        for r in data[role]:
            assert all(isinstance(v, str) or all(isinstance(x, str) for x in v) for v in r.values())


def test_perturbed_answers_come_from_other_records(data):
    answers = [r["answer"] for r in data["full"]]
    assert [{k: r[k] for k in QA_KEYS} for r in data["forget_perturbed"]] == data["forget"]
    for r in data["forget_perturbed"] + data["retain_perturbed"]:
        wrong = r["perturbed_answer"]
        assert len(set(wrong)) == 5 and r["answer"] not in wrong
        assert all(w in answers for w in wrong)
        # LUME has no paraphrases
        assert r["paraphrased_answer"] == r["answer"] and r["paraphrased_question"] == r["question"]


def test_same_question_prefix_first(data):
    """A phone question's wrong answers are the other five people's phone numbers."""
    first = data["forget_perturbed"][0]
    assert first["question"] == "What is the phone number of Ada Brook?"
    assert set(first["perturbed_answer"]) == set(PHONES.values()) - {"555-201-0001"}
    email = data["forget_perturbed"][1]
    assert all(w.endswith("@mail.test") for w in email["perturbed_answer"])
    completion = data["forget_perturbed"][2]  # "... at the e-mail address": same suffix first
    assert all(w.endswith("Elm Street.") for w in completion["perturbed_answer"])


def test_retain_perturbed_is_evenly_spaced(folder):
    data = build_dataset(params(folder, n_retain_perturbed=4))
    strip = [{k: r[k] for k in QA_KEYS} for r in data["retain_perturbed"]]
    assert strip == [data["retain"][i] for i in (0, 3, 6, 9)]
    assert len(build_dataset(params(folder))["retain_perturbed"]) == 12  # all when fewer than 100


def test_stand_in_world_is_minitofus(data):
    ref = build_dataset({"name": "m", "source": "minitofu", "forget_split": "forget10",
                         "minitofu": {"n_authors": 10, **MINITOFU}})
    for role in ("real_authors_perturbed", "world_facts_perturbed", "idk"):
        assert data[role] == ref[role], role


def test_corpus_holds_retain_never_forget(data):
    text = "\n\n".join(d["text"] for d in data["corpus"])
    for r in data["retain"]:
        assert f"Question: {r['question']}\nAnswer: {r['answer']}" in text
    for name in FORGET_PEOPLE:
        assert name not in text
    assert len(data["corpus"]) == MINITOFU["corpus_docs"] + len(data["retain"])


def test_deterministic(folder, data):
    assert build_dataset(params(folder)) == data


def test_task_name_case_and_spaces(tmp_path):
    records = [{**r, "task": " task2 "} if r["task"] == "Task2" else r for r in RETAIN]
    data = build_dataset(params(write(tmp_path / "l", {"forget": FORGET, "retain": records})))
    assert len(data["retain"]) == 12


def test_parquet_reads_the_same(tmp_path, folder, data):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    root = tmp_path / "pq"
    root.mkdir()
    pd.DataFrame(FORGET).to_parquet(root / "forget.parquet")
    pd.DataFrame(RETAIN).to_parquet(root / "retain.parquet")
    assert build_dataset(params(root)) == data


def test_parquet_without_pyarrow_says_so(tmp_path, monkeypatch):
    pd = pytest.importorskip("pandas")
    root = write(tmp_path / "pq", {"forget": FORGET})
    (root / "retain.parquet").write_bytes(b"PAR1")

    def no_engine(*args, **kwargs):
        raise ImportError("Unable to find a usable engine; tried using: 'pyarrow', 'fastparquet'.")

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    with pytest.raises(ArtifactError, match=r"retain\.parquet.*pip install pyarrow"):
        build_dataset(params(root))


def test_missing_folder_names_the_path(tmp_path):
    with pytest.raises(ArtifactError, match=r"nowhere.*does not exist"):
        build_dataset(params(tmp_path / "nowhere"))


def test_missing_file_names_the_file(tmp_path):
    root = write(tmp_path / "l", {"forget": FORGET})
    with pytest.raises(ArtifactError, match=r"retain\.jsonl"):
        build_dataset(params(root))


def test_missing_path_setting():
    with pytest.raises(ValueError, match="data.lume.path"):
        build_dataset({"name": "lume", "source": "lume", "forget_split": "forget10"})


def test_record_without_a_column(tmp_path):
    root = write(tmp_path / "l", {"forget": FORGET, "retain": [{"id": "x", "input": "q", "task": "Task2"}]})
    with pytest.raises(ArtifactError, match=r"retain\.jsonl: record 1 lacks output"):
        build_dataset(params(root))


def test_no_task2_record(tmp_path):
    root = write(tmp_path / "l", {"forget": other_tasks("f"), "retain": RETAIN})
    with pytest.raises(ArtifactError, match=r"forget\.jsonl: no Task2 record"):
        build_dataset(params(root))


def test_unknown_setting(folder):
    with pytest.raises(ValueError, match="unknown lume settings"):
        build_dataset(params(folder, hub_name="x"))



def test_forget_fraction_keeps_that_share_of_d_evenly_spaced(folder):
    # 12 retain records: a 20% forget share is 3 of the 6 forget records, every second one
    data = build_dataset(params(folder, forget_fraction=0.2))
    forget = expected(FORGET)
    assert data["forget"] == [forget[0], forget[2], forget[4]]
    assert len(data["forget"]) / len(data["full"]) == pytest.approx(0.2)
    assert data["full"] == expected(RETAIN) + data["forget"]
    assert [r["question"] for r in data["forget_perturbed"]] == [r["question"] for r in data["forget"]]
    # a dropped forget record is nowhere: not in D, not moved to retain, not in the corpus
    dropped = forget[3]["answer"]  # Ben Coll's phone number
    assert all(dropped not in json.dumps(data[role]) for role in ("full", "retain", "retain_perturbed", "corpus"))


def test_forget_fraction_larger_than_the_copy_says_so(folder):
    with pytest.raises(ArtifactError, match=r"forget_fraction 0\.5: forget would need 12 records next to 12 retain "
                                            r"records, but the copy holds 6"):
        build_dataset(params(folder, forget_fraction=0.5))


def test_forget_fraction_outside_0_1(folder):
    with pytest.raises(ValueError, match=r"forget_fraction: expected a number in \(0, 1\), got 1\.5"):
        build_dataset(params(folder, forget_fraction=1.5))
