"""What a model says about answer tokens: token log-probabilities, sequence log-probabilities,
the answer NLL, hidden states, and the alignment of answers inside padded batches.

Shared by the losses (objectives.py), the metrics (metrics/) and the distributed fine-tuning
(distributed.py), so none of them imports another for these. Batches are the right-padded
ones of ``data.collate.collate``: labels are ``IGNORE`` on prompt and padding tokens, and the
answer tokens are the answer plus a trailing EOS.
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


def batch_logits(model, batch) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def batch_token_logprobs(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    return token_logprobs(batch_logits(model, batch), batch["labels"])


def sequence_logprob(model, batch) -> torch.Tensor:
    """log p(y | x) per example: the sum over its answer tokens (EOS included)."""
    logp, _ = batch_token_logprobs(model, batch)
    return logp.sum(1)


def answer_nll(model, batch) -> torch.Tensor:
    """Mean negative log-likelihood over all answer tokens of the batch (EOS included)."""
    logp, mask = batch_token_logprobs(model, batch)
    return -logp.sum() / mask.sum().clamp(min=1)


def layer_hidden_states(model, batch, layer: int) -> torch.Tensor:
    """Output of decoder layer ``layer`` (0-based) for every input position."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    return out.hidden_states[layer + 1]  # hidden_states[0] is the embedding output


def align_answers(labels: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather indices that put each row's first answer token in column 0, and the mask of the
    answer tokens (answer + EOS) in that frame.

    ``labels[r, cols[r, j]]`` is answer token j of row r where ``mask[r, j]``; the logits
    predicting it sit at ``cols[r, j] - 1``.
    """
    first = (labels != IGNORE).int().argmax(1)
    lengths = attention_mask.sum(1)
    width = int(lengths.max() - first.min())
    raw = first[:, None] + torch.arange(width)[None, :]
    cols = raw.clamp(max=labels.shape[1] - 1)
    mask = raw < lengths[:, None]  # answer + EOS, then padding
    return cols, mask
