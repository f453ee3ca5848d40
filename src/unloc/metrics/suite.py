"""The TOFU evaluation suite of ``unloc eval``: every metric open-unlearning writes into its
TOFU_EVAL.json, under its name and in its shape, one registry entry each.

A metric is ``fn(suite) -> result``, where a result is open-unlearning's dict:
``{"agg_value": float | None}``, plus ``"value_by_index": {"0": {...}, ...}`` (keys are the
item's position in its split, as strings) for the metrics with per-item values, and for an
MIA ``{"forget": {...}, "holdout": {...}, "auc", "agg_value"}``. docs/metrics.md documents
every key. A ``Suite`` holds one model's scored passes (``curve.PointScores``: each split's
answers scored in one prompt pass, each split's greedy answers generated once), so the
metrics cost four scoring passes, one answers-only pass over the holdout set and four
generations; a metric that builds on others (truth ratios, MU, privleak) reads their results.

Splits are dataset roles: the forget set is read off ``forget_perturbed`` (the same QA pairs
as ``forget``, with their paraphrased and perturbed answers), the MIA's non-members off
``holdout`` (QA of authors no model saw).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from unloc.data.collate import prompt_ids, template_answer_ids
from unloc.metrics import mia
from unloc.metrics.curve import PointScores
from unloc.metrics.simu import exact_match, simu_aggregate
from unloc.metrics.tofu import (
    CORRECT_KEY,
    UTILITY_PARTS,
    AnswerScores,
    forget_quality,
    model_utility,
    rouge_scores,
    truth_ratio_from_losses,
)
from unloc.registry import Registry, Spec

FORGET, HOLDOUT = "forget_perturbed", "holdout"
SPLIT_ROLES = {"forget": FORGET, "retain": "retain_perturbed", "ra": "real_authors_perturbed",
               "wf": "world_facts_perturbed"}
"""open-unlearning's metric-name prefix of each split, and the dataset role it is read from."""
SCORED_ROLES = frozenset(SPLIT_ROLES.values())
"""The roles whose paraphrased and perturbed answers the suite scores (the holdout: answers only)."""


@dataclass(frozen=True, kw_only=True)
class EvalMetricSpec(Spec):
    """``needs``: the dataset roles it reads (its per-item values index the first);
    ``summary``: a top-level metric, in TOFU_SUMMARY.json; ``item_field``: the field of its
    ``value_by_index`` entries that the per-item CSV shows (None: it has none); ``generates``:
    the roles whose greedy answers it reads, itself or through the metrics it builds on."""

    summary: bool = False
    item_field: str | None = None
    generates: tuple[str, ...] = ()


EVAL_METRICS: Registry[EvalMetricSpec] = Registry("eval metric", EvalMetricSpec)


@dataclass(frozen=True)
class Reference:
    """What FQ and privleak compare a model with: the retain model's per-item forget truth
    ratios and its ``mia_min_k`` AUC (None where the reference does not hold it)."""

    forget_truth_ratio: np.ndarray | None
    mia_min_k_auc: float | None
    source: str


class Suite:
    """One model's scored passes and generations, and the results computed from them, once each."""

    def __init__(self, point: PointScores, reference: Reference | None = None):
        self.point, self.reference = point, reference
        self.conventions = point.cfg.conventions
        self._results: dict[str, dict] = {}

    def result(self, name: str) -> dict:
        if name not in self._results:
            self._results[name] = EVAL_METRICS[name].fn(self)
        return self._results[name]

    def scores(self, role: str) -> dict[str, AnswerScores]:
        return self.point.scores(role)

    def records(self, role: str) -> list[dict]:
        return self.point.roles[role]


def generation_roles(names) -> frozenset[str]:
    """The roles whose greedy answers the metrics ``names`` read (generated in one stream)."""
    return frozenset(role for name in names for role in EVAL_METRICS[name].generates)


def available(roles) -> list[str]:
    """The metrics whose roles are all in ``roles``, in registry order."""
    return [spec.name for spec in EVAL_METRICS.specs() if set(spec.needs) <= set(roles)]


def evaluate(suite: Suite, names) -> dict[str, dict]:
    """{name: result} of every metric in ``names``, computed in that order."""
    return {name: suite.result(name) for name in names}


def summary(results: dict[str, dict]) -> dict[str, float]:
    """TOFU_SUMMARY.json: the agg_value of every top-level metric that has one."""
    return {name: result["agg_value"] for name, result in results.items()
            if EVAL_METRICS[name].summary and result.get("agg_value") is not None}


# --------------------------------------------------------------------------- result shapes


def _by_index(values, field: str = "score") -> dict[str, dict]:
    return {str(i): {field: v} for i, v in enumerate(_floats(values))}


def _floats(values) -> list:
    """Plain floats (lists of them for [N, k] values), JSON-ready."""
    return torch.as_tensor(values).double().tolist()


def _mean(values) -> float:
    return float(torch.as_tensor(values).double().mean())


def _probability(scores: AnswerScores) -> dict:
    """open-unlearning's ``probability``: prob = exp(-mean token NLL) per answer, and its mean
    (for [N, k] answers: the mean over each item's options, then over items)."""
    prob = torch.exp(-scores.loss.double())
    items = zip(_floats(prob), _floats(scores.loss))
    return {"agg_value": _mean(prob),
            "value_by_index": {str(i): {"prob": p, "avg_loss": loss} for i, (p, loss) in enumerate(items)}}


def _truth_ratios(suite: Suite, role: str) -> torch.Tensor:
    """Per-item p(perturbed) / p(correct), p = exp(-mean token NLL), the perturbed answers' losses
    averaged first; open-unlearning adds its eps to the denominator."""
    scored = suite.scores(role)
    correct, wrong = scored[CORRECT_KEY[role]].loss.double(), scored["perturbed"].loss.double()
    eps = suite.conventions.eps
    if eps == 0:
        return truth_ratio_from_losses(correct, list(wrong))
    return torch.exp(-wrong.mean(1)) / (torch.exp(-correct) + eps)


def _mia(suite: Suite, score: Callable[[AnswerScores, list[dict]], torch.Tensor]) -> dict:
    """An MIA result: each set's scores, and the AUC of telling holdout from forget (mia.py)."""
    sets = {"forget": FORGET, "holdout": HOLDOUT}
    values = {name: _floats(score(suite.point.answer_scores(role), suite.records(role)))
              for name, role in sets.items()}
    auc = mia.mia_auc(values["forget"], values["holdout"])
    blocks = {name: {"agg_value": float(np.mean(v)), "value_by_index": _by_index(v)} for name, v in values.items()}
    return {**blocks, "auc": auc, "agg_value": auc}


# --------------------------------------------------------------------------- the metrics


def probability(suite: Suite, role: str, key: str) -> dict:
    scored = suite.scores(role)
    return _probability(scored[key])


def normalised_probability(suite: Suite, role: str) -> dict:
    """open-unlearning's ``probability_w_options``: p(answer) / (p(answer) + sum of p(perturbed) + eps)."""
    scored = suite.scores(role)
    correct = torch.exp(-scored["answer"].loss.double())
    wrong = torch.exp(-scored["perturbed"].loss.double()).sum(1)
    prob = correct / (correct + wrong + suite.conventions.eps)
    return {"agg_value": _mean(prob), "value_by_index": _by_index(prob, "prob")}


def truth_ratio(suite: Suite, role: str, closer_to_1: bool) -> dict:
    """Per-item truth ratios; the forget aggregate is mean(min(tr, 1/tr)) (closer to 1 is
    better), the others mean(max(0, 1 - tr)) (the true answer should be the likelier)."""
    tr = _truth_ratios(suite, role)
    if closer_to_1:
        agg = _mean(torch.minimum(tr, 1 / (tr + suite.conventions.eps)))
    else:
        agg = _mean((1 - tr).clamp(min=0))
    return {"agg_value": agg, "value_by_index": _by_index(tr)}


def rouge(suite: Suite, role: str) -> dict:
    """ROUGE of the greedy answers against the split's answers: rouge1 recall, rougeL F1 and
    recall per item (Porter-stemmed), with the prompt, the reference and the generation."""
    point, records = suite.point, suite.records(role)
    tokenizer, system_prompt = point.tokenizer, point.cfg.system_prompt
    generated = point.generations(role)
    if suite.conventions.template_labels:  # open-unlearning's reference: the decoded answer labels
        truths = [_decode(tokenizer, template_answer_ids(tokenizer, r["question"], r["answer"], system_prompt))
                  for r in records]
    else:
        truths = [r["answer"] for r in records]
    items = {}
    for i, (r, truth, generation, scores) in enumerate(zip(records, truths, generated,
                                                           rouge_scores(generated, truths))):
        prompt = _decode(tokenizer, prompt_ids(tokenizer, r["question"], system_prompt))
        items[str(i)] = {**scores, "input": prompt, "ground_truth": truth, "generation": generation}
    return {"agg_value": float(np.mean([v["rougeL_recall"] for v in items.values()])), "value_by_index": items}


def exact_match_metric(suite: Suite, role: str) -> dict:
    """seeds/003's EM: per item 1 when the greedy answer contains the split's answer (simu.exact_match).
    The gold is the record's answer under either convention (not the decoded labels ROUGE compares with
    under open-unlearning's), and the generations are the ones ROUGE reads: generated once per role."""
    generated = suite.point.generations(role)
    em = [exact_match(generation, r["answer"]) for generation, r in zip(generated, suite.records(role))]
    return {"agg_value": _mean(em), "value_by_index": _by_index(em)}


def _decode(tokenizer, ids) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def _register(name: str, fn: Callable, needs: tuple[str, ...], help: str, item_field: str | None = None,
              summary: bool = False, generates: tuple[str, ...] = ()) -> None:
    EVAL_METRICS.add(EvalMetricSpec(name=name, fn=fn, needs=needs, help=help, item_field=item_field,
                                    summary=summary, generates=generates))


# Probabilities, ROUGE and truth ratios of the four splits: the names say which split (forget,
# retain, ra = real authors, wf = world facts) and which answer (Q_A: the answer, PARA: the
# paraphrased one, PERT: the perturbed ones).
for _prefix, _role in SPLIT_ROLES.items():
    _forget = _prefix == "forget"
    _register(f"{_prefix}_Q_A_Prob", functools.partial(probability, role=_role, key="answer"), (_role,),
              "mean exp(-mean token NLL) of the answer", "prob", summary=_forget)
    if _prefix in ("forget", "retain"):  # the splits of TOFU's own authors have paraphrases
        _register(f"{_prefix}_Q_A_PARA_Prob", functools.partial(probability, role=_role, key="paraphrased_answer"),
                  (_role,), "mean exp(-mean token NLL) of the paraphrased answer", "prob", summary=_forget)
    _register(f"{_prefix}_Q_A_PERT_Prob", functools.partial(probability, role=_role, key="perturbed"), (_role,),
              "mean exp(-mean token NLL) of the perturbed answers", None, summary=_forget)
    if _prefix in ("ra", "wf"):
        _register(f"{_prefix}_Q_A_Prob_normalised", functools.partial(normalised_probability, role=_role), (_role,),
                  "p(answer) normalised over the answer and its perturbed options (an MU part)", "prob")
    _register(f"{_prefix}_Q_A_ROUGE", functools.partial(rouge, role=_role), (_role,),
              "mean ROUGE-L recall of the greedy answer", "rougeL_recall", summary=_forget, generates=(_role,))
    _register("forget_truth_ratio" if _forget else f"{_prefix}_Truth_Ratio",
              functools.partial(truth_ratio, role=_role, closer_to_1=_forget), (_role,),
              "truth ratio p(perturbed)/p(" + ("paraphrased" if CORRECT_KEY[_role] != "answer" else "answer")
              + "), aggregated " + ("mean min(tr, 1/tr)" if _forget else "mean max(0, 1 - tr) (an MU part)"),
              "score", summary=_forget)


# seeds/003's EM on the splits its Table 1 reports: forget, retain (retain_perturbed: 400 items, as the
# paper's 1/400 steps) and world facts. Not open-unlearning's; not in TOFU_SUMMARY.json.
for _prefix in ("forget", "retain", "wf"):
    _role = SPLIT_ROLES[_prefix]
    _register(f"{_prefix}_Q_A_EM", functools.partial(exact_match_metric, role=_role), (_role,),
              "share of greedy answers that contain the answer (seeds/003's EM)", "score", generates=(_role,))


MU_PARTS = ("retain_Q_A_Prob", "retain_Q_A_ROUGE", "retain_Truth_Ratio",
            "ra_Q_A_Prob_normalised", "ra_Q_A_ROUGE", "ra_Truth_Ratio",
            "wf_Q_A_Prob_normalised", "wf_Q_A_ROUGE", "wf_Truth_Ratio")
"""model_utility's 9 parts under open-unlearning's names, in the order of tofu.UTILITY_PARTS."""


@EVAL_METRICS.register("extraction_strength", needs=(FORGET,), summary=True, item_field="score")
def extraction_strength(suite: Suite) -> dict:
    """Mean Extraction Strength of the forget answers, teacher-forced (es.py)."""
    es = suite.point.answer_scores(FORGET).es(suite.conventions.es, torch.float64)
    return {"agg_value": _mean(es), "value_by_index": _by_index(es)}


def answer_extraction_strength(suite: Suite, role: str, key: str) -> dict:
    """Mean teacher-forced ES of ``role``'s ``key`` answers, from the split's scored pass."""
    es = suite.scores(role)[key].es(suite.conventions.es, torch.float64)
    return {"agg_value": _mean(es), "value_by_index": _by_index(es)}


# seeds/001's ES columns beside open-unlearning's extraction_strength (forget answers): ES-exact on
# the retain items (retain_perturbed: the held-out set no regulariser trains on) and ES-perturb, the
# ES of each item's paraphrased answer (docs/decisions.md). Free: the truth ratio's pass scores both.
for _prefix, _key, _name in (("retain", "answer", "retain_extraction_strength"),
                             ("forget", "paraphrased_answer", "forget_para_extraction_strength"),
                             ("retain", "paraphrased_answer", "retain_para_extraction_strength")):
    _register(_name, functools.partial(answer_extraction_strength, role=SPLIT_ROLES[_prefix], key=_key),
              (SPLIT_ROLES[_prefix],), f"mean teacher-forced ES of the {_prefix} split's "
              + ("answers" if _key == "answer" else "paraphrased answers (seeds/001's ES-perturb)"), "score")


@EVAL_METRICS.register("forget_quality", needs=(FORGET,), summary=True)
def forget_quality_metric(suite: Suite) -> dict:
    """KS-test p-value of the forget truth ratios against the reference's (null without one)."""
    reference = suite.reference
    if reference is None or reference.forget_truth_ratio is None:
        return {"agg_value": None}
    tr = np.asarray([v["score"] for v in suite.result("forget_truth_ratio")["value_by_index"].values()])
    if suite.conventions.eps == 0:
        return {"agg_value": forget_quality(tr, reference.forget_truth_ratio)}  # floored: log10 stays finite
    return {"agg_value": float(stats.ks_2samp(tr, reference.forget_truth_ratio).pvalue)}


_UTILITY_ROLES = tuple(SPLIT_ROLES[p] for p in ("retain", "ra", "wf"))


@EVAL_METRICS.register("model_utility", needs=_UTILITY_ROLES, summary=True, generates=_UTILITY_ROLES)
def model_utility_metric(suite: Suite) -> dict:
    """Harmonic mean of the 9 MU parts (MU_PARTS)."""
    parts = {ours: suite.result(name)["agg_value"] for ours, name in zip(UTILITY_PARTS, MU_PARTS)}
    return {"agg_value": model_utility(parts)}


@EVAL_METRICS.register("mia_min_k", needs=(FORGET, HOLDOUT), summary=True, item_field="score")
def mia_min_k(suite: Suite) -> dict:
    """AUC of Min-k% Prob (k = 0.4) telling the holdout from the forget answers."""
    return _mia(suite, lambda scores, records: scores.min_k)


@EVAL_METRICS.register("mia_loss", needs=(FORGET, HOLDOUT), summary=True, item_field="score")
def mia_loss(suite: Suite) -> dict:
    """AUC of the answers' mean token NLL telling the holdout from the forget answers."""
    return _mia(suite, lambda scores, records: scores.loss)


@EVAL_METRICS.register("mia_zlib", needs=(FORGET, HOLDOUT), summary=True, item_field="score")
def mia_zlib(suite: Suite) -> dict:
    """AUC of the NLL over zlib length telling the holdout from the forget answers."""
    return _mia(suite, lambda scores, records: torch.tensor(
        [mia.zlib_score(loss, r["answer"]) for loss, r in zip(scores.loss.tolist(), records)]))


@EVAL_METRICS.register("privleak", needs=(FORGET, HOLDOUT), summary=True)
def privleak_metric(suite: Suite) -> dict:
    """Relative difference of 1 - AUC (mia_min_k) against the reference's, in percent (0.5 without one)."""
    reference = suite.reference
    ref = reference.mia_min_k_auc if reference is not None and reference.mia_min_k_auc is not None else 0.5
    return {"agg_value": mia.privleak(suite.result("mia_min_k")["agg_value"], ref)}


SIMU_AGGREGATE_PARTS = ("forget_Q_A_EM", "forget_Q_A_ROUGE", "mia_loss", "retain_Q_A_EM", "retain_Q_A_ROUGE")
"""simu_aggregate's five parts, in its argument order. The MIA is mia_loss: the paper's MIA is an AUC that
falls when the forget set is unlearned (0.79 for the original models), which the loss-based attack of forget
against holdout answers is; ROUGE is the suite's ROUGE-L recall."""
_SIMU_ROLES = (FORGET, SPLIT_ROLES["retain"])


@EVAL_METRICS.register("simu_aggregate", needs=(*_SIMU_ROLES, HOLDOUT), summary=True, generates=_SIMU_ROLES)
def simu_aggregate_metric(suite: Suite) -> dict:
    """seeds/003's TOFU aggregate: mean(1 - EM_F, 1 - ROUGE_F, 1 - MIA, EM_R, ROUGE_R) (SIMU_AGGREGATE_PARTS)."""
    return {"agg_value": simu_aggregate(*(suite.result(name)["agg_value"] for name in SIMU_AGGREGATE_PARTS))}
