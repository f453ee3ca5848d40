"""Curve metrics: the numbers a mixing sweep reports at every point, one registry entry each.

Each entry of ``CURVE_METRICS`` writes some columns of ``curve.csv`` and reads the dataset
roles it ``needs``; ``mix.metrics`` in the config says which run, in order. At each point an
entry takes a ``PointScores``, which scores each role's answers in one teacher-forced pass and
generates each role's greedy answers once, whoever asks first, so the metrics share passes:

* ES needs only the argmax of the logits the TOFU losses already compute, so FS comes from
  the forget truth-ratio pass (``forget_perturbed`` holds the forget items with their
  paraphrased and perturbed answers) and, when ``rs_items`` is ``"retain_perturbed"``, RS from
  the pass that scores MU's retain split; any other ``rs_items`` (an item count or ``"all"``)
  scores RS on the first retain items in a pass of its own. When no metric of the point reads
  a role's perturbed answers (ES-only sweeps, Table 6), only its answers are scored;
* FQ is the KS test of the forget truth ratios (from that same forget pass) against θr's;
* MU's nine parts come from the three utility splits' passes and generations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from unloc.data.collate import Encoded
from unloc.metrics.es import per_example_es
from unloc.metrics.generation import greedy_generate, pad_token_id
from unloc.metrics.tofu import (
    CORRECT_KEY,
    UTILITY_PARTS,
    UTILITY_SPLITS,
    AnswerScores,
    TofuEvalConfig,
    forget_quality,
    model_utility,
    split_answer_scores,
    split_parts,
    split_scores,
    truth_ratio_from_losses,
)
from unloc.registry import Registry, Spec

RS_FROM_MU_PASS = "retain_perturbed"
CURVE_LABELS = ("scenario", "objective", "localizer", "seed")
"""The first columns of every ``curve.csv``: what the curve is, so that tables select by value."""
FORGET = "forget_perturbed"


@dataclass(frozen=True, kw_only=True)
class CurveMetricSpec(Spec):
    """``fn(point: PointScores) -> {column: value}`` for exactly ``columns``; ``needs`` are dataset
    roles; ``perturbed``: whether it reads their paraphrased and perturbed answers too."""

    columns: tuple[str, ...] = ()
    perturbed: bool = True


CURVE_METRICS: Registry[CurveMetricSpec] = Registry("curve metric", CurveMetricSpec)


class PointScores:
    """One model at one mixing point: each role's scored pass and greedy generations, on demand, once.

    ``roles`` maps dataset roles to records; ``reference_tr`` are θr's forget truth ratios (FQ's
    reference sample); ``retain_es`` the encoded retain items RS is scored on, or None to take
    RS from MU's retain split; ``perturbed_roles`` the roles whose paraphrased and perturbed
    answers some metric of the point reads (``perturbed_roles(metrics)``), None for all;
    ``generation_roles`` the roles whose greedy answers will all be read: the first request for
    one generates them all in one continuously batched stream (one draining tail, not one per role).
    """

    def __init__(self, model, tokenizer, roles: dict[str, list[dict]], cfg: TofuEvalConfig, es_convention: str,
                 reference_tr: torch.Tensor | None = None, retain_es: list[Encoded] | None = None,
                 perturbed_roles: frozenset[str] | None = None, generation_roles: frozenset[str] = frozenset()):
        self.model, self.tokenizer, self.roles, self.cfg = model, tokenizer, roles, cfg
        self.es_convention, self.reference_tr, self.retain_es = es_convention, reference_tr, retain_es
        self.perturbed_roles, self.generation_roles = perturbed_roles, generation_roles
        self._scores: dict[str, dict[str, AnswerScores]] = {}
        self._answers: dict[str, AnswerScores] = {}
        self._generated: dict[str, list[str]] = {}

    def scores(self, role: str) -> dict[str, AnswerScores]:
        """"answer", the role's truth-ratio answer and "perturbed" scores of every record of ``role``."""
        if role not in self._scores:
            self._scores[role] = split_scores(self.model, self.tokenizer, self.roles[role], CORRECT_KEY[role], self.cfg)
        return self._scores[role]

    def answer_scores(self, role: str) -> AnswerScores:
        """The scores of ``role``'s answers: from its full pass when a metric reads its perturbed
        answers, else from a pass over the answers alone."""
        if self.perturbed_roles is None or role in self.perturbed_roles:
            return self.scores(role)["answer"]
        if role not in self._answers:
            self._answers[role] = split_answer_scores(self.model, self.tokenizer, self.roles[role], self.cfg)
        return self._answers[role]

    def generations(self, role: str) -> list[str]:
        if role not in self._generated:
            roles = [role, *(r for r in self.roles if r in self.generation_roles - {role, *self._generated})]
            cfg, questions = self.cfg, [r["question"] for x in roles for r in self.roles[x]]
            answers = greedy_generate(self.model, self.tokenizer, questions, cfg.max_new_tokens, cfg.batch_size,
                                      cfg.system_prompt, cfg.device, cfg.conventions.mask_pad_tokens)
            for x in roles:
                self._generated[x], answers = answers[:len(self.roles[x])], answers[len(self.roles[x]):]
        return self._generated[role]

    def truth_ratios(self, role: str) -> torch.Tensor:
        scored = self.scores(role)
        return truth_ratio_from_losses(scored[CORRECT_KEY[role]].loss, list(scored["perturbed"].loss))


def evaluate_point(point: PointScores, metrics: Sequence[str]) -> dict[str, float]:
    """Every column of the named curve metrics, in their order."""
    row: dict[str, float] = {}
    for name in metrics:
        spec = CURVE_METRICS[name]
        values = spec.fn(point)
        if list(values) != list(spec.columns):
            raise AssertionError(f"curve metric {name} wrote {list(values)}, declared {list(spec.columns)}")
        row.update(values)
    return row


def curve_columns(metrics: Sequence[str]) -> list[str]:
    return [c for name in metrics for c in CURVE_METRICS[name].columns]


def perturbed_roles(metrics: Sequence[str]) -> frozenset[str]:
    """The roles whose paraphrased and perturbed answers some of ``metrics`` reads."""
    return frozenset(role for name in metrics if CURVE_METRICS[name].perturbed for role in CURVE_METRICS[name].needs)


def check_forget_items(forget: Sequence[dict], forget_perturbed: Sequence[dict]) -> None:
    """FS is read off ``forget_perturbed``: it must hold exactly the forget QA pairs."""
    if sorted((r["question"], r["answer"]) for r in forget) != sorted(
            (r["question"], r["answer"]) for r in forget_perturbed):
        raise ValueError("forget_perturbed does not hold the forget set's QA pairs, so FS cannot be scored "
                         "in the truth-ratio pass; check the dataset's forget split")


@CURVE_METRICS.register("es", columns=("es_forget", "es_retain", "fs", "rs"), needs=(FORGET, RS_FROM_MU_PASS),
                        perturbed=False)
def extraction_strength(point: PointScores) -> dict[str, float]:
    """Mean ES on forget and retain (seeds/000 App. B), FS = 1 - ES(forget), RS = ES(retain)."""
    es_forget = float(point.answer_scores(FORGET).es(point.es_convention).mean())
    if point.retain_es is None:
        es_retain = float(point.answer_scores(RS_FROM_MU_PASS).es(point.es_convention).mean())
    else:
        cfg = point.cfg
        es_retain = float(per_example_es(point.model, point.retain_es, pad_token_id(point.tokenizer), cfg.batch_size,
                                         cfg.device, point.es_convention).mean())
    return {"es_forget": es_forget, "es_retain": es_retain, "fs": 1 - es_forget, "rs": es_retain}


@CURVE_METRICS.register("es_perturb", columns=("es_para_forget", "es_para_retain"), needs=(FORGET, RS_FROM_MU_PASS))
def paraphrased_extraction_strength(point: PointScores) -> dict[str, float]:
    """seeds/001's ES-perturb: mean ES of the paraphrased answers of the forget items and of the
    held-out retain items (retain_perturbed), read off their truth-ratio passes."""
    return {f"es_para_{name}": float(point.scores(role)["paraphrased_answer"].es(point.es_convention).mean())
            for name, role in (("forget", FORGET), ("retain", RS_FROM_MU_PASS))}


@CURVE_METRICS.register("fq", columns=("fq", "log10_fq"), needs=(FORGET,))
def forget_quality_metric(point: PointScores) -> dict[str, float]:
    """FQ: KS-test p-value of the forget truth ratios against θr's, and its log10."""
    if point.reference_tr is None:
        raise ValueError("fq needs θr's forget truth ratios (the reference_stats stage)")
    fq = forget_quality(point.truth_ratios(FORGET), point.reference_tr)
    return {"fq": fq, "log10_fq": math.log10(fq)}  # finite: forget_quality floors FQ


@CURVE_METRICS.register("mu", columns=("mu", *UTILITY_PARTS), needs=tuple(role for _, role, _ in UTILITY_SPLITS))
def model_utility_metric(point: PointScores) -> dict[str, float]:
    """MU: the harmonic mean of (retain, real authors, world facts) x (probability, ROUGE-L, truth ratio)."""
    parts: dict[str, float] = {}
    for prefix, role, normalised in UTILITY_SPLITS:
        parts.update(split_parts(point.scores(role), point.generations(role), point.roles[role], prefix, normalised,
                                 CORRECT_KEY[role]))
    parts = {name: parts[name] for name in UTILITY_PARTS}
    return {"mu": model_utility(parts), **parts}
