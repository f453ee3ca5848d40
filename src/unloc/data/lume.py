"""lume: LUME (SemEval-2025 Task 4) Task 2, synthetic PII biographies, from a local copy.

seeds/000 App. E.2 / Table 6 runs Oracle vs. Random on "the LUME Task 2 PII dataset"
(Ramakrishna et al., 2025). This source reads a local copy; it downloads nothing.

Expected format: the directory ``data.lume.path`` holds

* ``forget.jsonl`` and ``retain.jsonl``: JSON Lines, one record per line, each an object
  with (at least) the keys ``id``, ``input``, ``output`` and ``task``, e.g.
  ``{"id": "...", "input": "What is the phone number of X?", "output": "...", "task": "Task2"}``;
  blank lines are skipped and other keys (the hub release also has ``split``) ignored;
* or, for either file, ``forget.parquet`` / ``retain.parquet`` with the same columns (read
  with pandas, which needs pyarrow). Where both exist the ``.jsonl`` is read.

Only records whose ``task`` is ``Task2`` (case and spaces ignored) are kept; Task 1
(creative documents) and Task 3 (pretraining documents) are dropped. ``input`` becomes the
question and ``output`` the answer, in file order: LUME's QA items are questions, its
sentence-completion items a text prefix and its continuation, both kept.

Roles: ``forget`` / ``retain`` = the kept records of ``forget.*`` / ``retain.*`` (the release's
split: ``data.forget_split`` is not used by this source), ``full`` = retain then forget (so
forget is full's tail, as in the other sources). ``forget_fraction`` (seeds/000 Table 6's 10%
forget ratio) keeps round(f · |retain| / (1 − f)) evenly spaced forget records, so that forget is
that share of D, and drops the others (from D altogether: moving them to retain would teach the
model what it is then asked to forget); null keeps the release's split.

``forget_perturbed`` holds every forget item, ``retain_perturbed`` ``n_retain_perturbed`` retain
items evenly spaced (all when fewer). Their 5 ``perturbed_answer``s are other records' answers
(over forget and retain), those whose question shares the longest word prefix with this one
first ("What is the phone number of ..." → other phone numbers), then the longest word suffix
(sentence completions ending "... at the e-mail address"), ties broken by a fixed seed; each
differs from the answer.
LUME has no paraphrases, so ``paraphrased_answer`` is the answer and ``paraphrased_question``
the question: the truth ratio and Forget Quality are meaningless on this source, which is
why Table 6 reports AUES only.

``real_authors_perturbed``, ``world_facts_perturbed`` and ``idk`` are a stand-in: minitofu's
world (``pii.world_parts``), configured by ``data.minitofu`` (its ``seed``,
``n_real_authors``, ``n_world_facts``, ``corpus_docs``; minitofu's defaults where absent).
``corpus`` (only used to pretrain a tiny model) is that world's corpus and the retain QA in the
prompt format, as TOFU's corpus holds its retain QA: never a forget record.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from unloc.data import minitofu, pii
from unloc.data.tofu import evenly_spaced, qa_corpus
from unloc.io import ArtifactError, read_jsonl

DEFAULTS = {"path": None, "n_retain_perturbed": 100, "forget_fraction": None}
SPLITS = ("forget", "retain")
COLUMNS = ("id", "input", "output", "task")
TASK = "task2"
N_PERTURBED = minitofu.N_PERTURBED


# --------------------------------------------------------------------------- reading


def _split_file(root: Path, split: str) -> Path:
    for ext in (".jsonl", ".parquet"):
        path = root / f"{split}{ext}"
        if path.is_file():
            return path
    raise ArtifactError(f"LUME split {split!r} missing: expected the file {root / f'{split}.jsonl'} "
                        f"(or {root / f'{split}.parquet'})")


def _read_parquet(path: Path) -> list[dict]:
    try:
        import pandas as pd

        frame = pd.read_parquet(path)
    except ImportError as e:
        raise ArtifactError(f"cannot read {path}: reading Parquet needs pandas with pyarrow "
                            f"(pip install pyarrow), or convert the file to {path.with_suffix('.jsonl')} "
                            f"({e})") from e
    return frame.to_dict("records")


def read_split(path: str | os.PathLike) -> list[dict]:
    """The records of one LUME file (.jsonl or .parquet), every one checked for ``COLUMNS``."""
    path = Path(path)
    records = _read_parquet(path) if path.suffix == ".parquet" else read_jsonl(path)
    for i, r in enumerate(records, 1):
        missing = [c for c in COLUMNS if c not in r] if isinstance(r, dict) else list(COLUMNS)
        if missing:
            raise ArtifactError(f"{path}: record {i} lacks {', '.join(missing)} (LUME records have "
                                f"{', '.join(COLUMNS)})")
    return records


def is_task2(record: dict) -> bool:
    return "".join(str(record["task"]).split()).lower() == TASK


def load(path: str | os.PathLike) -> dict[str, list[dict]]:
    """``forget`` and ``retain`` of a local LUME copy: the Task 2 records as question/answer."""
    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(f"LUME folder {root} does not exist (data.lume.path); expected "
                            f"{root / 'forget.jsonl'} and {root / 'retain.jsonl'}")
    out = {}
    for split in SPLITS:
        file = _split_file(root, split)
        kept = [{"question": str(r["input"]), "answer": str(r["output"])} for r in read_split(file) if is_task2(r)]
        if not kept:
            raise ArtifactError(f"{file}: no Task2 record (the task key of every record is something else)")
        out[split] = kept
    return out


# --------------------------------------------------------------------------- perturbed answers


def _common_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def answer_pool(records: list[dict]) -> list[tuple[list[str], str]]:
    """(lower-cased question words, answer) of every record perturbed answers come from."""
    return [(r["question"].lower().split(), r["answer"]) for r in records]


def perturbed_answers(rng: random.Random, record: dict, pool: list[tuple[list[str], str]]) -> list[str]:
    """N_PERTURBED distinct answers of other records, the most similar questions first."""
    words = record["question"].lower().split()
    backwards = words[::-1]
    scored = sorted((-_common_prefix(words, ow), -_common_prefix(backwards, ow[::-1]), rng.random(), answer)
                    for ow, answer in pool if answer != record["answer"])
    out = list(dict.fromkeys(answer for *_, answer in scored))[:N_PERTURBED]
    if len(out) < N_PERTURBED:
        raise ArtifactError(f"LUME Task2 holds too few distinct answers for {N_PERTURBED} perturbed answers "
                            f"of {record['question']!r}")
    return out


def perturbed_record(rng: random.Random, record: dict, pool: list[tuple[list[str], str]]) -> dict:
    return {**record, "paraphrased_answer": record["answer"],
            "perturbed_answer": perturbed_answers(rng, record, pool),
            "paraphrased_question": record["question"]}


# --------------------------------------------------------------------------- build


def settings(params: dict) -> dict:
    """The ``lume`` section of the data params, with defaults filled in and checked."""
    p = {**DEFAULTS, **(params.get("lume") or {})}
    unknown = [k for k in p if k not in DEFAULTS]
    if unknown:
        raise ValueError(f"unknown lume settings {', '.join(unknown)}: allowed {', '.join(DEFAULTS)}")
    if not p["path"]:
        raise ValueError("data.lume.path must name the local LUME folder (forget.jsonl, retain.jsonl)")
    return p


def forget_share(forget: list[dict], retain: list[dict], fraction: float | None) -> tuple[list[dict], list[dict]]:
    """Forget cut to ``fraction`` of D (evenly spaced records) and retain; both as given for None."""
    if fraction is None:
        return forget, retain
    if not 0 < fraction < 1:
        raise ValueError(f"data.lume.forget_fraction: expected a number in (0, 1), got {fraction!r}")
    n = max(1, round(fraction * len(retain) / (1 - fraction)))
    if n > len(forget):
        raise ArtifactError(f"data.lume.forget_fraction {fraction}: forget would need {n} records next to "
                            f"{len(retain)} retain records, but the copy holds {len(forget)}")
    return evenly_spaced(forget, n), retain


def build(params: dict) -> dict[str, list[dict]]:
    """Every dataset role from a local LUME copy (see the module docstring for the mapping)."""
    p = settings(params)
    splits = load(p["path"])
    forget, retain = forget_share(splits["forget"], splits["retain"], p["forget_fraction"])
    pool = answer_pool(retain + forget)
    rng = random.Random("lume:perturbed")
    forget_perturbed = [perturbed_record(rng, r, pool) for r in forget]
    retain_perturbed = [perturbed_record(rng, r, pool) for r in evenly_spaced(retain, p["n_retain_perturbed"])]

    w = minitofu.settings(params)
    _, world = pii.world_parts(w["seed"], w["n_real_authors"], w["n_world_facts"], w["corpus_docs"])
    return {
        "full": retain + forget,
        "forget": forget,
        "retain": retain,
        "forget_perturbed": forget_perturbed,
        "retain_perturbed": retain_perturbed,
        "real_authors_perturbed": world["real_authors_perturbed"],
        "world_facts_perturbed": world["world_facts_perturbed"],
        "idk": world["idk"],
        "corpus": world["corpus"] + qa_corpus(retain),
    }
