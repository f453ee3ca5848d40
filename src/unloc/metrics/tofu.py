"""TOFU metrics (DESIGN §6): answer probability, truth ratio, ROUGE-L recall, FQ and MU.

Every likelihood is a per-token mean over the answer tokens, EOS included, from one
teacher-forced forward pass per batch. The pieces are split in two layers so each
convention can be tested against its definition: functions of losses (pure arithmetic)
and functions of a model (which only compute losses or generations and call the former).
``utility_parts`` scores each split's losses once and reuses them for probability and
truth ratio. Conventions and their sources: docs/metrics.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from transformers import PreTrainedModel

from unloc.data.collate import answer_ids, collate, encode_qa, prompt_ids, template_answer_ids
from unloc.metrics.es import es_from_k_star, k_star_from_correct
from unloc.metrics.generation import cache_input, cache_output, greedy_generate, left_pad, pad_token_id
from unloc.scoring import align_answers

UTILITY_PARTS = (
    "retain_prob", "retain_rouge", "retain_tr",
    "real_authors_prob", "real_authors_rouge", "real_authors_tr",
    "world_facts_prob", "world_facts_rouge", "world_facts_tr",
)
"""The 9 numbers whose harmonic mean is MU, in the order the pipeline writes them."""

CORRECT_KEY = {
    "forget_perturbed": "paraphrased_answer",
    "retain_perturbed": "paraphrased_answer",
    "real_authors_perturbed": "answer",
    "world_facts_perturbed": "answer",
}
"""The answer a truth ratio compares the perturbed answers with, per dataset role (TOFU's choice)."""

UTILITY_SPLITS = (("retain", "retain_perturbed", False),
                  ("real_authors", "real_authors_perturbed", True),
                  ("world_facts", "world_facts_perturbed", True))
"""(part prefix, dataset role, probability normalised over the perturbed options)."""


@dataclass(frozen=True)
class Conventions:
    """How answers are tokenized, attended to and scored: unloc's own (docs/metrics.md) or
    open-unlearning's, so that numbers can sit next to its published ones. Only
    ``template_labels`` and ``mask_pad_tokens`` change what a forward pass computes."""

    name: str
    es: str  # ES convention (es.py)
    template_labels: bool  # label the chat template's end of turn too (collate.template_answer_ids)
    mask_pad_tokens: bool  # attention 0 on every pad-id token, prompt included (pad = EOS: each end of turn)
    eps: float  # added to the denominators of truth ratio, normalised probability and closer-to-1
    # token log-probs as open-unlearning's cross_entropy over [B, V, T] logits computes them: on the CPU
    # that float32 kernel is off by up to 2e-4 per token (log_softmax over the last dim: 1e-5), which moves
    # its probabilities in the 5th digit
    spatial_cross_entropy: bool = False


CONVENTIONS = {
    "unloc": Conventions("unloc", "paper", template_labels=False, mask_pad_tokens=False, eps=0.0),
    "open_unlearning": Conventions("open_unlearning", "open_unlearning", template_labels=True,
                                   mask_pad_tokens=True, eps=1e-10, spatial_cross_entropy=True),
}


@dataclass(frozen=True)
class TofuEvalConfig:
    max_length: int
    batch_size: int
    max_new_tokens: int
    system_prompt: str | None = None
    device: str = "cpu"
    conventions: Conventions = CONVENTIONS["unloc"]

    @property
    def scoring(self) -> tuple:
        """The arguments ``answer_scores`` and ``grouped_answer_scores`` take after the answers."""
        return self.max_length, self.batch_size, self.device, self.system_prompt, self.conventions


# --------------------------------------------------------------------------- losses


MIN_K_FRACTION = 0.4
"""Min-k% Prob's k (metrics/mia.py), open-unlearning's TOFU setting: reduced inside every scoring
pass, so the MIA needs no per-token tensors kept and no pass of its own."""


@dataclass(frozen=True)
class AnswerScores:
    """What one teacher-forced pass tells about each answer: its per-token mean NLL (answer +
    EOS), ES's k* (es.py), so ES needs no pass of its own, and its Min-k% Prob score (minus
    the mean of its ``MIN_K_FRACTION`` lowest token log-probs, ``mia.min_k_score``). Tensors
    share one shape."""

    loss: torch.Tensor  # float64
    k_star: torch.Tensor  # long
    length: torch.Tensor  # long: answer tokens without EOS
    min_k: torch.Tensor  # float64

    def es(self, convention: str = "paper", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return es_from_k_star(self.k_star.flatten(), self.length.flatten(), convention, dtype).view(self.length.shape)

    def __getitem__(self, index) -> AnswerScores:
        return AnswerScores(self.loss[index], self.k_star[index], self.length[index], self.min_k[index])

    def view(self, *shape) -> AnswerScores:
        return AnswerScores(self.loss.view(*shape), self.k_star.view(*shape), self.length.view(*shape),
                            self.min_k.view(*shape))

    @staticmethod
    def empty(*shape) -> AnswerScores:
        return AnswerScores(torch.empty(shape, dtype=torch.float64), torch.empty(shape, dtype=torch.long),
                            torch.empty(shape, dtype=torch.long), torch.empty(shape, dtype=torch.float64))

    def put(self, index, scores: AnswerScores) -> None:
        """Write ``scores`` into rows ``index`` of these (preallocated) tensors."""
        for name in ("loss", "k_star", "length", "min_k"):
            getattr(self, name)[index] = getattr(scores, name)


def _token_scores(logits: torch.Tensor, targets: torch.Tensor,
                  spatial: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T] log p(target) and whether the target is the argmax, from ``logits`` [B, T, V];
    ``spatial``: log p as ``Conventions.spatial_cross_entropy`` says."""
    logits = logits.float()
    if spatial:  # each position as a [V, 1] "image": the kernel of a [B, V, T] cross_entropy
        flat = logits.reshape(-1, logits.shape[-1], 1)
        logp = -F.cross_entropy(flat, targets.reshape(-1, 1), reduction="none").view(targets.shape)
    else:
        logp = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
    return logp, logits.argmax(-1) == targets


def _scores_from_token_scores(logp: torch.Tensor, correct: torch.Tensor, mask: torch.Tensor) -> AnswerScores:
    """Scores of answers whose tokens (EOS last) are left-aligned in [B, T] ``logp`` and
    ``correct`` (``_token_scores``), with ``mask`` marking real tokens."""
    logp = logp * mask
    length = mask.sum(1) - 1
    k_star = k_star_from_correct(correct, length)
    return AnswerScores((-logp.sum(1) / mask.sum(1)).double().cpu(), k_star.cpu(), length.cpu(),
                        _min_k(logp, mask.bool()).cpu())


def _min_k(logp: torch.Tensor, mask: torch.Tensor, k: float = MIN_K_FRACTION) -> torch.Tensor:
    """[B] ``mia.min_k_score`` of each row's real tokens, batched: sort each row with padding
    last, then average the first max(1, floor(n * k)) (n * k in float64, as the definition's)."""
    n = mask.sum(1)
    lowest = torch.where(mask, logp.double(), torch.inf).sort(1).values
    take = (n.double() * k).floor().long().clamp(min=1)
    keep = torch.arange(logp.shape[1], device=logp.device)[None, :] < take[:, None]
    mean = torch.where(keep, lowest, 0.0).sum(1) / take
    return torch.where(n > 0, -mean, 0.0)


def _scores_from_logits(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> AnswerScores:
    """Scores of answers whose tokens (EOS last) are ``targets`` [B, T] left-aligned, with
    ``logits`` [B, T, V] predicting each of them and ``mask`` marking real tokens."""
    return _scores_from_token_scores(*_token_scores(logits, targets), mask)


@torch.no_grad()
def answer_scores(model, tokenizer, pairs: Sequence[tuple[str, str]], max_length: int, batch_size: int = 32,
                  device: str = "cpu", system_prompt: str | None = None,
                  conventions: Conventions = CONVENTIONS["unloc"]) -> AnswerScores:
    """[N] scores of each (question, answer) pair, one right-padded causal pass per batch.

    Pairs are sorted by length before batching so a batch pads little; a right-padded causal
    pass gives every real token the logits it would get alone, so the result does not
    depend on ``batch_size`` (up to float rounding). unloc's conventions only: the others are
    implemented by ``grouped_answer_scores``, which every Hugging Face model is scored with.
    """
    if conventions != CONVENTIONS["unloc"]:
        raise ValueError(f"{conventions.name} conventions need a Hugging Face model (grouped_answer_scores)")
    encoded = [encode_qa(tokenizer, q, a, max_length, system_prompt) for q, a in pairs]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    out = AnswerScores.empty(len(encoded))
    pad_id = pad_token_id(tokenizer)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = collate([encoded[i] for i in rows], pad_id)
        logits = model(input_ids=batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device)).logits
        # re-align every row so column 0 is its first answer token (and its predicting logits)
        cols, mask = align_answers(batch["labels"], batch["attention_mask"])
        targets = torch.where(mask, batch["labels"].gather(1, cols), 0)
        pred = logits.gather(1, (cols - 1).to(logits.device)[..., None].expand(-1, -1, logits.shape[-1]))
        out.put(rows, _scores_from_logits(pred, targets.to(logits.device), mask.to(logits.device).long()))
    return out


def answer_losses(model, tokenizer, pairs: Sequence[tuple[str, str]], max_length: int, batch_size: int = 32,
                  device: str = "cpu", system_prompt: str | None = None) -> torch.Tensor:
    """[N] mean NLL per answer token (answer + EOS) of each (question, answer) pair."""
    return answer_scores(model, tokenizer, pairs, max_length, batch_size, device, system_prompt).loss


@torch.no_grad()
def grouped_answer_scores(model, tokenizer, questions: Sequence[str], answer_groups: Sequence[Sequence[str]],
                          max_length: int, batch_size: int = 32, device: str = "cpu",
                          system_prompt: str | None = None,
                          conventions: Conventions = CONVENTIONS["unloc"]) -> AnswerScores:
    """[N, k] scores of k answers to each of N questions.

    The same numbers as ``answer_scores`` on every (question, answer) pair, but each prompt
    runs once: its KV cache is repeated for the k answers (truth ratios score 4-7 answers per
    question, and the prompt is about half of each sequence). Prompts are left-padded with
    explicit position ids, so every token sees what it would see alone. ``conventions`` say
    which tokens are labelled and attended to (``Conventions``).
    """
    k = len(answer_groups[0]) if answer_groups else 0
    if any(len(g) != k for g in answer_groups):
        raise ValueError("every question needs the same number of answers")
    pad, eos = pad_token_id(tokenizer), tokenizer.eos_token_id
    prompts = [prompt_ids(tokenizer, q, system_prompt) for q in questions]
    if conventions.template_labels:
        answers = [[template_answer_ids(tokenizer, q, a, system_prompt) for a in group]
                   for q, group in zip(questions, answer_groups)]
    else:
        answers = [[answer_ids(tokenizer, a)[: max(max_length - len(p) - 1, 1)] + [eos] for a in group]
                   for p, group in zip(prompts, answer_groups)]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + max(len(a) for a in answers[i]))
    out = AnswerScores.empty(len(prompts), k)
    per_batch = max(1, batch_size // k)
    for start in range(0, len(order), per_batch):
        items = order[start:start + per_batch]
        scores = _group_scores(model, [prompts[i] for i in items], [answers[i] for i in items], k, pad, device,
                               conventions)
        out.put(items, scores.view(len(items), k))
    return out


def grouped_answer_losses(model, tokenizer, questions, answer_groups, max_length: int, batch_size: int = 32,
                          device: str = "cpu", system_prompt: str | None = None) -> torch.Tensor:
    """[N, k] per-token mean NLL (answer + EOS) of k answers to each of N questions."""
    return grouped_answer_scores(model, tokenizer, questions, answer_groups, max_length, batch_size, device,
                                 system_prompt).loss


def _group_scores(model, prompts, answers, k, pad, device,
                  conventions: Conventions = CONVENTIONS["unloc"]) -> AnswerScores:
    mask_pad_tokens, spatial = conventions.mask_pad_tokens, conventions.spatial_cross_entropy
    ids_p, real_p = (t.to(device) for t in left_pad(prompts, pad))
    # open-unlearning attends to no pad-id token (with pad = EOS: no end of turn), yet counts
    # them in the position ids, which its right-padded passes take as 0..T-1
    mask_p = real_p * (ids_p != pad) if mask_pad_tokens else real_p
    # only the prompt's last position predicts an answer token: skip the LM head elsewhere
    out = model(input_ids=ids_p, attention_mask=mask_p, position_ids=(real_p.cumsum(-1) - 1).clamp(min=0),
                use_cache=True, logits_to_keep=1)
    cache = cache_output(out)
    cache.batch_repeat_interleave(k)
    rows = [a for group in answers for a in group]
    width = max(len(a) for a in rows)
    ids_a = torch.full((len(rows), width), pad, dtype=torch.long)
    mask_a = torch.zeros((len(rows), width), dtype=torch.long)
    for r, a in enumerate(rows):
        ids_a[r, :len(a)], mask_a[r, :len(a)] = torch.tensor(a), 1
    ids_a, mask_a = ids_a.to(device), mask_a.to(device)
    attend_a = mask_a * (ids_a != pad) if mask_pad_tokens else mask_a
    start = real_p.sum(-1).repeat_interleave(k)[:, None]
    # the answer's last token (EOS) predicts nothing we score
    attention = torch.cat([mask_p.repeat_interleave(k, 0), attend_a[:, :-1]], 1)
    inputs = dict(input_ids=ids_a[:, :-1], attention_mask=attention,
                  position_ids=start + torch.arange(width - 1, device=device)[None, :], **cache_input(model, cache))
    # the prompt's last position predicts the first answer token; answer position t predicts t + 1.
    # Scored apart and joined as [B, T] scores: joining the [B, T, V] logits copied them all.
    first = _token_scores(out.logits[:, -1:].repeat_interleave(k, 0), ids_a[:, :1], spatial)
    targets, real = ids_a[:, 1:], mask_a[:, 1:].bool()
    if getattr(model.config, "model_type", None) in HEAD_IS_LOGITS:
        rest = _head_token_scores(model, model.get_decoder()(**inputs).last_hidden_state, targets, real, spatial)
    else:
        rest = _token_scores(model(**inputs).logits, targets, spatial)
    logp, correct = (torch.cat(pair, 1) for pair in zip(first, rest))
    return _scores_from_token_scores(logp, correct, mask_a)


HEAD_IS_LOGITS = frozenset({"llama", "olmo2", "mistral", "qwen2", "phi3"})
"""Model types whose logits are exactly the output embedding of the decoder's last hidden state
(no soft-capping or scaling after it): their scoring runs the LM head on real answer positions only."""
HEAD_ROWS = 512
"""Positions per LM-head chunk: [512, V] logits stay in cache where a batch's [B, T, V] would not."""


def _head_token_scores(model, hidden: torch.Tensor, targets: torch.Tensor, real: torch.Tensor,
                       spatial: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``_token_scores`` of the LM head on ``hidden`` [B, T, H] where ``real`` [B, T] (padding,
    about a fifth of a group's answer positions, is left at 0 and masked out after), in chunks."""
    head, h, t = model.get_output_embeddings(), hidden[real], targets[real]
    chunks = [_token_scores(head(h[i:i + HEAD_ROWS]), t[i:i + HEAD_ROWS], spatial)
              for i in range(0, len(h), HEAD_ROWS)]
    logp = torch.zeros(real.shape, dtype=torch.float32, device=hidden.device)
    correct = torch.zeros(real.shape, dtype=torch.bool, device=hidden.device)
    if chunks:
        logp[real], correct[real] = torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks])
    return logp, correct


def _scored(model, tokenizer, records: Sequence[dict], keys: Sequence[str], args,
            perturbed: bool = True) -> dict[str, AnswerScores]:
    """Scores of each record's answers under ``keys`` plus (``perturbed``) its perturbed
    answers; returns {key: [N]} and "perturbed": [N, k].

    HF models score each question's answers with one prompt pass (``grouped_answer_scores``);
    anything else (the whole-sequence stand-ins of the definition tests) pair by pair, which
    a test shows gives the same numbers.
    """
    questions = [r["question"] for r in records]
    groups = [[r[key] for key in keys] + (list(r["perturbed_answer"]) if perturbed else []) for r in records]
    if isinstance(model, PreTrainedModel):
        scores = grouped_answer_scores(model, tokenizer, questions, groups, *args)
    else:
        pairs = [(q, a) for q, group in zip(questions, groups) for a in group]
        scores = answer_scores(model, tokenizer, pairs, *args).view(len(records), -1)
    named = {key: scores[:, j] for j, key in enumerate(keys)}
    return {**named, "perturbed": scores[:, len(keys):]} if perturbed else named


# --------------------------------------------------------------------------- functions of losses


def truth_ratio_from_losses(correct: torch.Tensor, perturbed: Sequence[torch.Tensor]) -> torch.Tensor:
    """tr = exp(-mean_k loss_k) / exp(-loss_correct), in log space so it cannot overflow early."""
    mean_perturbed = torch.stack([p.mean() for p in perturbed])
    return torch.exp(correct.double() - mean_perturbed.double())


def normalised_probability_from_losses(correct: torch.Tensor, perturbed: Sequence[torch.Tensor]) -> torch.Tensor:
    """p_correct / (p_correct + sum_k p_k) per item, p = exp(-mean token loss)."""
    p_correct = torch.exp(-correct.double())
    p_perturbed = torch.stack([torch.exp(-p.double()).sum() for p in perturbed])
    return p_correct / (p_correct + p_perturbed)


def truth_ratio_forget(tr: torch.Tensor) -> float:
    """Forget aggregate: mean(min(tr, 1/tr)); 1 when correct and perturbed are equally likely."""
    return float(torch.minimum(tr, 1.0 / tr).mean())


def truth_ratio_utility(tr: torch.Tensor) -> float:
    """Utility aggregate: mean(max(0, 1 - tr)); 1 when the correct answer dominates."""
    return float((1.0 - tr).clamp(min=0.0).mean())


@lru_cache(maxsize=2)
def _rouge_scorer(*types: str):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(types), use_stemmer=True)


def rouge_l_recall(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L recall (LCS / reference length, Porter-stemmed tokens) of predictions."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    scorer = _rouge_scorer("rougeL")
    return float(np.mean([scorer.score(ref, pred)["rougeL"].recall for pred, ref in zip(predictions, references)]))


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> list[dict[str, float]]:
    """Per prediction: ROUGE-1 recall, ROUGE-L F1 and ROUGE-L recall (Porter-stemmed), the
    fields of open-unlearning's ROUGE entries; rougeL_recall is ``rouge_l_recall``'s."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    scorer = _rouge_scorer("rouge1", "rougeL")
    out = []
    for pred, ref in zip(predictions, references):
        score = scorer.score(ref, pred)
        out.append({"rouge1_recall": score["rouge1"].recall, "rougeL_f1": score["rougeL"].fmeasure,
                    "rougeL_recall": score["rougeL"].recall})
    return out


SMALLEST_FQ = math.ulp(0.0)
"""FQ's floor, the smallest positive double (5e-324): a p-value that underflows to 0 becomes this, so
log10 FQ stays finite (>= -323.3) and MU95 can interpolate through it."""


def forget_quality(tr_model_forget, tr_reference_forget) -> float:
    """FQ: two-sample KS p-value between the raw forget truth ratios of a model and of θr,
    floored at ``SMALLEST_FQ``."""
    p = float(stats.ks_2samp(_numpy(tr_model_forget), _numpy(tr_reference_forget)).pvalue)
    return max(p, SMALLEST_FQ)


def log10_fq(tr_model_forget, tr_reference_forget) -> float:
    """log10 FQ, the number the paper's tables show (finite: FQ is floored)."""
    return math.log10(forget_quality(tr_model_forget, tr_reference_forget))


def model_utility(parts: dict[str, float]) -> float:
    """MU: harmonic mean of the 9 ``UTILITY_PARTS`` (0 if any part is 0)."""
    values = np.array([parts[name] for name in UTILITY_PARTS], dtype=np.float64)
    with np.errstate(divide="ignore"):
        return float(stats.hmean(values))


def _numpy(x) -> np.ndarray:
    return torch.as_tensor(x).double().cpu().numpy()


# --------------------------------------------------------------------------- functions of a model


def truth_ratios(model, tokenizer, records: Sequence[dict], correct_key: str, max_length: int,
                 batch_size: int = 32, device: str = "cpu", system_prompt: str | None = None) -> torch.Tensor:
    """[N] raw per-item truth ratios; ``correct_key`` from ``CORRECT_KEY`` for the records' role."""
    scored = _scored(model, tokenizer, records, [correct_key], (max_length, batch_size, device, system_prompt))
    return truth_ratio_from_losses(scored[correct_key].loss, list(scored["perturbed"].loss))


def answer_probability(model, tokenizer, records: Sequence[dict], normalised: bool, max_length: int,
                       batch_size: int = 32, device: str = "cpu", system_prompt: str | None = None) -> float:
    """Mean probability of the ``answer``: raw exp(-loss) (retain) or normalised over the
    perturbed options (real authors, world facts)."""
    args = (max_length, batch_size, device, system_prompt)
    if not normalised:
        return float(torch.exp(-answer_losses(model, tokenizer, [(r["question"], r["answer"]) for r in records],
                                              *args)).mean())
    scored = _scored(model, tokenizer, records, ["answer"], args)
    return float(normalised_probability_from_losses(scored["answer"].loss, list(scored["perturbed"].loss)).mean())


def split_scores(model, tokenizer, records: Sequence[dict], correct_key: str,
                 cfg: TofuEvalConfig) -> dict[str, AnswerScores]:
    """One scored pass over a split: "answer", ``correct_key`` and "perturbed"."""
    keys = list(dict.fromkeys(["answer", correct_key]))
    return _scored(model, tokenizer, records, keys, cfg.scoring)


def split_answer_scores(model, tokenizer, records: Sequence[dict], cfg: TofuEvalConfig) -> AnswerScores:
    """The scores of a split's answers alone (ES), without the paraphrased and perturbed ones
    that make up most of ``split_scores``' sequences (6 of 7 on TOFU's forget split)."""
    return _scored(model, tokenizer, records, ["answer"], cfg.scoring, perturbed=False)["answer"]


def split_parts(scored: dict[str, AnswerScores], generated: Sequence[str], records: Sequence[dict], prefix: str,
                normalised: bool, correct_key: str) -> dict[str, float]:
    """The three MU parts of one split from its scores and greedy generations."""
    answer, perturbed = scored["answer"].loss, list(scored["perturbed"].loss)
    prob = normalised_probability_from_losses(answer, perturbed) if normalised else torch.exp(-answer)
    return {f"{prefix}_prob": float(prob.mean()),
            f"{prefix}_rouge": rouge_l_recall(generated, [r["answer"] for r in records]),
            f"{prefix}_tr": truth_ratio_utility(truth_ratio_from_losses(scored[correct_key].loss, perturbed))}


def split_utility(model, tokenizer, records: Sequence[dict], prefix: str, normalised: bool,
                  correct_key: str, cfg: TofuEvalConfig) -> dict[str, float]:
    """The three MU parts of one split, scoring each answer set once."""
    scored = split_scores(model, tokenizer, records, correct_key, cfg)
    generated = greedy_generate(model, tokenizer, [r["question"] for r in records], cfg.max_new_tokens,
                                cfg.batch_size, cfg.system_prompt, cfg.device, cfg.conventions.mask_pad_tokens)
    return split_parts(scored, generated, records, prefix, normalised, correct_key)


def utility_parts(model, tokenizer, roles: dict, cfg: TofuEvalConfig) -> dict[str, float]:
    """The 9 MU parts, keyed and ordered as ``UTILITY_PARTS``."""
    parts: dict[str, float] = {}
    for prefix, role, normalised in UTILITY_SPLITS:
        parts.update(split_utility(model, tokenizer, roles[role], prefix, normalised, CORRECT_KEY[role], cfg))
    return {name: parts[name] for name in UTILITY_PARTS}


def forget_truth_ratios(model, tokenizer, forget_perturbed: Sequence[dict], cfg: TofuEvalConfig) -> torch.Tensor:
    """Raw per-item truth ratios on the forget set (paraphrased answer as the correct one), for FQ."""
    return truth_ratios(model, tokenizer, forget_perturbed, CORRECT_KEY["forget_perturbed"], cfg.max_length,
                        cfg.batch_size, cfg.device, cfg.system_prompt)
