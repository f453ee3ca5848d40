"""The real TOFU benchmark (Maini et al., 2024) mapped onto the dataset roles.

Two ways in, differing only in how a config name becomes its records:

* ``params["tofu"]["path"]``: a local folder in the HF hub repository's layout, one
  ``<config>.json`` per config (JSON Lines despite the extension), plus
  ``idontknow.jsonl``;
* ``path: null``: the hub dataset ``params["tofu"]["hub_name"]`` through
  ``datasets.load_dataset(hub_name, config, split="train")``. ``idontknow.jsonl`` is not a
  config: it is fetched with ``huggingface_hub.hf_hub_download`` from the same dataset
  repository. ``locuslab/TOFU`` does not hold it (it ships with the TOFU code,
  github.com/locuslab/tofu, ``data/idontknow.jsonl``), so for that repository use a local
  folder that has the configs and that file side by side.

Roles for ``forget_split = forgetNN``: ``forget`` = ``forgetNN``, ``retain`` =
``retain{100-NN}``, ``forget_perturbed`` = ``forgetNN_perturbed``, and ``full``,
``retain_perturbed``, ``real_authors_perturbed``, ``world_facts_perturbed`` as named;
``idk`` = the lines of ``idontknow.jsonl`` (plain text, one refusal per line).

Two options cut the benchmark down for a CPU run (both null = TOFU as published):

* ``retain_items: N`` keeps the first N retain items (TOFU lists them author by author, 20
  each, so N = 100 is the first five retain authors); ``full`` keeps the kept retain items and
  the forget items, and ``retain_perturbed`` keeps only items of the kept retain set, so MU's
  retain probes stay knowledge that θr was fine-tuned on.
* ``utility_items: N`` keeps N items of each utility split (``retain_perturbed``,
  ``real_authors_perturbed``, ``world_facts_perturbed``), evenly spaced over the split so
  every part of it stays represented. The forget roles are never cut: FQ compares their
  truth ratios item for item.

``corpus`` (used only when a tiny model is pretrained on TOFU itself): the retain QA and
the real-author and world-fact QA, each as ``"Question: ...\\nAnswer: ..."``, the prompt
format of the tiny models. It never holds a forget item, so the forget set stays unseen
until it is injected; the real-author and world-fact probes are then in-distribution
knowledge, as they are for a model pretrained on the web.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from unloc.io import ArtifactError, read_jsonl

FORGET_SPLITS = ("forget01", "forget05", "forget10")
UTILITY_ROLES = ("retain_perturbed", "real_authors_perturbed", "world_facts_perturbed")
IDK_FILE = "idontknow.jsonl"
QA_FORMAT = "Question: {question}\nAnswer: {answer}"


def config_names(forget_split: str) -> dict[str, str]:
    """The TOFU config each QA role is read from."""
    if forget_split not in FORGET_SPLITS:
        raise ValueError(f"TOFU forget_split must be one of {', '.join(FORGET_SPLITS)}, got {forget_split!r}")
    nn = int(forget_split.removeprefix("forget"))
    return {
        "full": "full",
        "forget": forget_split,
        "retain": f"retain{100 - nn}",
        "forget_perturbed": f"{forget_split}_perturbed",
        "retain_perturbed": "retain_perturbed",
        "real_authors_perturbed": "real_authors_perturbed",
        "world_facts_perturbed": "world_facts_perturbed",
    }


# --------------------------------------------------------------------------- sources
# A source is (config name -> records, idk lines).


def _local_source(root: Path) -> tuple[Callable[[str], list[dict]], Callable[[], list[str]]]:
    if not root.is_dir():
        raise ArtifactError(f"TOFU folder {root} does not exist (data.tofu.path); expected <config>.json files "
                            f"such as {root / 'full.json'} and {root / IDK_FILE}")

    def config(name: str) -> list[dict]:
        path = root / f"{name}.json"
        if not path.is_file():
            raise ArtifactError(f"TOFU config {name!r} missing: expected the file {path}")
        return read_jsonl(path)

    def idk() -> list[str]:
        return _read_lines(root / IDK_FILE)

    return config, idk


def _hub_source(hub_name: str) -> tuple[Callable[[str], list[dict]], Callable[[], list[str]]]:
    def config(name: str) -> list[dict]:
        from datasets import load_dataset

        return [dict(r) for r in load_dataset(hub_name, name, split="train")]

    def idk() -> list[str]:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        try:
            path = hf_hub_download(repo_id=hub_name, filename=IDK_FILE, repo_type="dataset")
        except EntryNotFoundError as e:
            raise ArtifactError(
                f"{IDK_FILE} is not in the hub dataset {hub_name}; it ships with the TOFU code "
                f"(github.com/locuslab/tofu, data/{IDK_FILE}): put it next to the <config>.json "
                f"files in a local folder and set data.tofu.path") from e
        return _read_lines(Path(path))

    return config, idk


def _read_lines(path: Path) -> list[str]:
    """Non-blank lines of a plain-text file (idontknow.jsonl is not JSON)."""
    if not path.is_file():
        raise ArtifactError(f"TOFU refusal answers missing: expected the file {path}")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --------------------------------------------------------------------------- build


def qa_corpus(*record_lists: list[dict]) -> list[dict]:
    return [{"text": QA_FORMAT.format(question=r["question"], answer=r["answer"])}
            for records in record_lists for r in records]


def evenly_spaced(records: list[dict], n: int) -> list[dict]:
    """``n`` records spread evenly over ``records``, in their order (all of them when n >= len)."""
    if n >= len(records):
        return list(records)
    return [records[i * len(records) // n] for i in range(n)]


def subsample(roles: dict[str, list[dict]], retain_items: int | None, utility_items: int | None) -> None:
    """Cut ``roles`` in place as ``data.tofu.retain_items`` / ``utility_items`` say (module docstring)."""
    if retain_items is not None:
        roles["retain"] = roles["retain"][:retain_items]
        kept = {r["question"] for r in roles["retain"]} | {r["question"] for r in roles["forget"]}
        roles["full"] = [r for r in roles["full"] if r["question"] in kept]
        roles["retain_perturbed"] = [r for r in roles["retain_perturbed"] if r["question"] in kept]
        if not roles["retain_perturbed"]:
            raise ValueError(f"data.tofu.retain_items = {retain_items} keeps no item of retain_perturbed "
                             "(TOFU's retain_perturbed holds items of the first 20 retain authors, 20 each): "
                             "keep at least the first 20 retain items")
    if utility_items is not None:
        for role in UTILITY_ROLES:
            roles[role] = evenly_spaced(roles[role], utility_items)


def source(params: dict) -> tuple[Callable[[str], list[dict]], Callable[[], list[str]]]:
    """(config name -> records, the refusal lines) of the local folder or hub dataset ``params`` name."""
    tofu = params.get("tofu") or {}
    if tofu.get("path"):
        return _local_source(Path(tofu["path"]))
    return _hub_source(tofu.get("hub_name") or "locuslab/TOFU")


def holdout(params: dict) -> list[dict]:
    """``holdoutNN``: QA of authors TOFU never fine-tunes on, as many as ``forgetNN`` holds (the
    MIA's non-members). Never cut: the MIA compares it with the whole forget set."""
    config, _ = source(params)
    return config(params["forget_split"].replace("forget", "holdout"))


def build(params: dict) -> dict[str, list[dict]]:
    """Every dataset role from TOFU's configs (see the module docstring for the mapping)."""
    names = config_names(params["forget_split"])
    tofu = params.get("tofu") or {}
    config, idk = source(params)
    roles = {role: config(name) for role, name in names.items()}
    subsample(roles, tofu.get("retain_items"), tofu.get("utility_items"))
    roles["idk"] = [{"answer": line} for line in idk()]
    roles["corpus"] = qa_corpus(roles["retain"], roles["real_authors_perturbed"], roles["world_facts_perturbed"])
    return roles
