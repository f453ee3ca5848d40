"""Loss functions: pure functions of a model and a batch.

``answer_nll`` is the supervised loss of every learning stage (answer tokens only).
Unlearning objectives (WGA, NPO, DPO, RMU, ...) join the ``OBJECTIVES`` registry.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unloc.data.collate import IGNORE


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log p(label) for next-token prediction, and the mask of scored tokens."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    mask = labels != IGNORE
    logp = -F.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
    return logp * mask, mask


def answer_nll(model, batch) -> torch.Tensor:
    """Mean negative log-likelihood over all answer tokens of the batch (EOS included)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logp, mask = token_logprobs(logits, batch["labels"])
    return -logp.sum() / mask.sum().clamp(min=1)


def forget_retain_nll(model, batch, lambda_retain: float) -> torch.Tensor:
    """Injection loss: L_forget + lambda_retain * L_retain on a paired batch."""
    return answer_nll(model, batch["main"]) + lambda_retain * answer_nll(model, batch["paired"])


OBJECTIVES: dict = {}
