"""One row of a mixing curve: every number the sweep reports at one α, from one scored pass
per split.

ES needs only the argmax of the logits that the TOFU losses already compute, so FS comes
from the forget truth-ratio pass (``forget_perturbed`` holds the forget items with their
paraphrased and perturbed answers) and, when ``rs_items`` is ``"retain_perturbed"``, RS
from the pass that scores MU's retain split. Any other ``rs_items`` (an item count or
``"all"``) scores RS on the first retain items in a pass of its own.
"""

from __future__ import annotations

import math
from typing import Sequence

from unloc.data.collate import Encoded
from unloc.metrics.es import per_example_es
from unloc.metrics.generation import greedy_generate, pad_token_id
from unloc.metrics.tofu import (
    CORRECT_KEY,
    UTILITY_PARTS,
    UTILITY_SPLITS,
    TofuEvalConfig,
    forget_quality,
    model_utility,
    split_parts,
    split_scores,
    truth_ratio_from_losses,
)

RS_FROM_MU_PASS = "retain_perturbed"


def check_forget_items(forget: Sequence[dict], forget_perturbed: Sequence[dict]) -> None:
    """FS is read off ``forget_perturbed``: it must hold exactly the forget QA pairs."""
    if sorted((r["question"], r["answer"]) for r in forget) != sorted(
            (r["question"], r["answer"]) for r in forget_perturbed):
        raise ValueError("forget_perturbed does not hold the forget set's QA pairs, so FS cannot be scored "
                         "in the truth-ratio pass; check the dataset's forget split")


def evaluate_point(model, tokenizer, roles: dict, reference_tr, cfg: TofuEvalConfig, es_convention: str,
                   retain_es: list[Encoded] | None = None) -> dict[str, float]:
    """ES forget/retain, FS, RS, FQ, log10 FQ, MU and MU's parts of ``model``.

    ``roles`` maps the four ``*_perturbed`` dataset roles to records; ``retain_es`` are the
    encoded retain items RS is scored on, or None to take RS from ``retain_perturbed``.
    """
    forget = split_scores(model, tokenizer, roles["forget_perturbed"], CORRECT_KEY["forget_perturbed"], cfg)
    es_forget = float(forget["answer"].es(es_convention).mean())
    tr = truth_ratio_from_losses(forget[CORRECT_KEY["forget_perturbed"]].loss, list(forget["perturbed"].loss))
    fq = forget_quality(tr, reference_tr)

    parts: dict[str, float] = {}
    for prefix, role, normalised in UTILITY_SPLITS:
        records = roles[role]
        scored = split_scores(model, tokenizer, records, CORRECT_KEY[role], cfg)
        generated = greedy_generate(model, tokenizer, [r["question"] for r in records], cfg.max_new_tokens,
                                    cfg.batch_size, cfg.system_prompt, cfg.device)
        parts.update(split_parts(scored, generated, records, prefix, normalised, CORRECT_KEY[role]))
        if role == "retain_perturbed" and retain_es is None:
            es_retain = float(scored["answer"].es(es_convention).mean())
    if retain_es is not None:
        es_retain = float(per_example_es(model, retain_es, pad_token_id(tokenizer), cfg.batch_size, cfg.device,
                                         es_convention).mean())
    parts = {name: parts[name] for name in UTILITY_PARTS}
    return {"es_forget": es_forget, "es_retain": es_retain, "fs": 1 - es_forget, "rs": es_retain, "fq": fq,
            "log10_fq": math.log10(fq) if fq > 0 else float("-inf"), "mu": model_utility(parts), **parts}
