"""Extraction Strength (seeds/000 App. B), teacher-forced in one forward pass.

ES(x, y) = 1 - k*/|y| with k* = min{k : the greedy continuation of [x, y<k] equals y>=k}.
A greedy continuation from prefix k reproduces y>=k exactly when the argmax at every answer
position j >= k is the gold token (each correct step feeds the gold token back in), so k*
is one past the last wrong position (0 when none is wrong) and needs no generation.
|y| counts the answer tokens without the EOS.

Conventions (docs/metrics.md): ``paper`` lets k run to |y| (ES in [0, 1]);
``open_unlearning`` caps k at |y| - 1, so ES >= 1/|y|.
"""

from __future__ import annotations

import torch

from unloc.data.collate import Encoded, collate

ES_CONVENTIONS = ("paper", "open_unlearning")


def answer_correct(logits: torch.Tensor, labels: torch.Tensor, answer_len: torch.Tensor):
    """[B, T'] bool: argmax is gold at each answer position (EOS excluded); and the position mask."""
    pred = logits[:, :-1].argmax(-1)
    gold = labels[:, 1:]
    scored = gold != -100
    # position of the first answer token in the shifted frame, per row
    first = scored.float().argmax(1)
    pos = torch.arange(gold.shape[1], device=gold.device)[None, :]
    in_answer = (pos >= first[:, None]) & (pos < first[:, None] + answer_len[:, None])
    return (pred == gold) & in_answer, in_answer


def k_star_from_correct(correct: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """[B] k* from [B, T] answer-aligned correctness (column j = answer token j, EOS excluded):
    one past the last wrong position among the first ``length`` columns, 0 when none is wrong."""
    pos = torch.arange(correct.shape[1], device=correct.device)[None, :]
    wrong = ~correct & (pos < length.to(correct.device)[:, None])
    return torch.where(wrong, pos, torch.full_like(pos, -1)).amax(1) + 1


def es_from_k_star(k_star: torch.Tensor, length: torch.Tensor, convention: str = "paper",
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """ES = 1 - k*/|y| under ``convention`` (module docstring), on the CPU."""
    if convention not in ES_CONVENTIONS:
        raise ValueError(f"unknown ES convention {convention!r}: allowed {', '.join(ES_CONVENTIONS)}")
    k, n = k_star.cpu(), length.cpu()
    if convention == "open_unlearning":
        k = torch.minimum(k, (n - 1).clamp(min=0))
    return 1.0 - k.to(dtype) / n.clamp(min=1).to(dtype)


@torch.no_grad()
def extraction_strength(model, batch, convention: str = "paper") -> torch.Tensor:
    """Per-example ES for a right-padded batch from ``collate``."""
    if convention not in ES_CONVENTIONS:
        raise ValueError(f"unknown ES convention {convention!r}: allowed {', '.join(ES_CONVENTIONS)}")
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    correct, in_answer = answer_correct(logits, batch["labels"], batch["answer_len"])
    # shift each row so column 0 is its first answer token
    first = in_answer.float().argmax(1)
    cols = (first[:, None] + torch.arange(correct.shape[1], device=correct.device)[None, :]).clamp(
        max=correct.shape[1] - 1)
    aligned = correct.gather(1, cols)
    length = batch["answer_len"].to(logits.device)
    return es_from_k_star(k_star_from_correct(aligned, length), length, convention)


def mean_es(model, examples: list[Encoded], pad_id: int, batch_size: int = 32, device="cpu",
            convention: str = "paper") -> float:
    return float(per_example_es(model, examples, pad_id, batch_size, device, convention).mean())


def per_example_es(model, examples, pad_id, batch_size=32, device="cpu", convention="paper") -> torch.Tensor:
    out = []
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start:start + batch_size], pad_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        out.append(extraction_strength(model, batch, convention))
    return torch.cat(out)


@torch.no_grad()
def extraction_strength_by_generation(model, prompt: list[int], answer: list[int],
                                      convention: str = "paper") -> float:
    """The definition, literally: greedy-continue from every prefix of the answer."""
    n = len(answer)
    max_k = n if convention == "paper" else max(n - 1, 0)
    for k in range(0, max_k + 1):
        context = torch.tensor([prompt + answer[:k]])
        suffix = answer[k:]
        if not suffix:
            return 1.0 - k / n
        out = model.generate(context, attention_mask=torch.ones_like(context), max_new_tokens=len(suffix),
                             do_sample=False, pad_token_id=0)
        if out[0, context.shape[1]:].tolist() == suffix:
            return 1.0 - k / n
    return 1.0 - max_k / n
