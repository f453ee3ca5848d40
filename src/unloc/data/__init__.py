"""Dataset roles: one registry of sources, each building every role in TOFU's schema.

A source is ``build(params) -> {role: records}`` over all of ``ROLES``, where ``params`` is
the ``data`` section of the pipeline config. Record schemas (TOFU's):

* ``full``, ``forget``, ``retain``: ``{"question", "answer"}``;
* ``forget_perturbed``, ``retain_perturbed``: ``{"question", "answer", "paraphrased_answer",
  "perturbed_answer": [5 str], "paraphrased_question"}``;
* ``real_authors_perturbed``, ``world_facts_perturbed``: ``{"question", "answer",
  "perturbed_answer": [3 str]}``;
* ``idk``: ``{"answer"}`` (refusal answers); ``corpus``: ``{"text"}`` (pretraining documents).

Each role is stored as ``<data_dir>/<role>.jsonl``. Sources (``data.source``):

* ``minitofu``: a seeded fictitious-author world (``minitofu.py``);
* ``tofu``: the TOFU benchmark, local or from the hub (``tofu.py``);
* ``pii``: seeded synthetic personal records, a stand-in for LUME Task 2 (``pii.py``);
* ``lume``: LUME (SemEval-2025 Task 4) Task 2 from a local copy (``lume.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from unloc.data import lume, minitofu, pii, tofu
from unloc.io import ArtifactError, read_jsonl, write_jsonl

# The keys of each role's records (the schema above), for the sources and their tests
QA_KEYS = frozenset({"question", "answer"})  # full, forget, retain
PERTURBED_KEYS = QA_KEYS | {"paraphrased_answer", "perturbed_answer", "paraphrased_question"}  # *_perturbed of D
PROBE_KEYS = QA_KEYS | {"perturbed_answer"}  # real_authors_perturbed, world_facts_perturbed

ROLES = (
    "full",
    "forget",
    "retain",
    "forget_perturbed",
    "retain_perturbed",
    "real_authors_perturbed",
    "world_facts_perturbed",
    "idk",
    "corpus",
)

SOURCES = {"lume": lume.build, "minitofu": minitofu.build, "pii": pii.build, "tofu": tofu.build}
HOLDOUT_SOURCES = {"minitofu": minitofu.holdout, "tofu": tofu.holdout}
"""Sources with a holdout set (QA of authors the models never see, as many as the forget set's):
the non-members of the MIA (metrics/mia.py). It is not a role of ``ROLES``: only evaluation reads it."""


def build_dataset(params: dict) -> dict[str, list[dict]]:
    """Every role of the dataset that ``params["source"]`` names."""
    source = params.get("source")
    if source not in SOURCES:
        raise ValueError(f"unknown data source {source!r}: allowed {', '.join(sorted(SOURCES))}")
    return SOURCES[source](params)


def build_holdout(params: dict) -> list[dict]:
    """The holdout QA of the source ``params["source"]`` names (``HOLDOUT_SOURCES``)."""
    source = params.get("source")
    if source not in HOLDOUT_SOURCES:
        raise ValueError(f"data source {source!r} has no holdout set, so no MIA can be scored on it: sources "
                         f"with one are {', '.join(sorted(HOLDOUT_SOURCES))}")
    return HOLDOUT_SOURCES[source](params)


def write_dataset(roles: dict[str, list[dict]], out_dir: str | os.PathLike) -> None:
    """One JSON Lines file per role, each written atomically."""
    for role, records in roles.items():
        write_jsonl(Path(out_dir) / f"{role}.jsonl", records)


def load_role(data_dir: str | os.PathLike, role: str) -> list[dict]:
    """The records of one role written by ``write_dataset``."""
    path = Path(data_dir) / f"{role}.jsonl"
    if not path.is_file():
        raise ArtifactError(f"missing dataset role {role!r}: no file {path}")
    return read_jsonl(path)
