"""Loss functions: pure functions of a model and a batch (seeds/000 App. A).

``answer_nll`` is the supervised loss of every learning stage (answer tokens only).
The unlearning objectives live in ``OBJECTIVES``; each takes the model, a batch and its
objective's inputs as keyword arguments (reference log-likelihoods, a steering vector, ...),
which the unlearn stage prepares once, so the functions themselves stay pure.
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


def batch_token_logprobs(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return token_logprobs(logits, batch["labels"])


def sequence_logprob(model, batch) -> torch.Tensor:
    """log p(y | x) per example: the sum over its answer tokens (EOS included)."""
    logp, _ = batch_token_logprobs(model, batch)
    return logp.sum(1)


def answer_nll(model, batch) -> torch.Tensor:
    """Mean negative log-likelihood over all answer tokens of the batch (EOS included)."""
    logp, mask = batch_token_logprobs(model, batch)
    return -logp.sum() / mask.sum().clamp(min=1)


def forget_retain_nll(model, batch, lambda_retain: float) -> torch.Tensor:
    """Injection loss: L_forget + lambda_retain * L_retain on a paired batch."""
    return answer_nll(model, batch["main"]) + lambda_retain * answer_nll(model, batch["paired"])


# --------------------------------------------------------------------------- unlearning


def wga_loss(model, batch, *, alpha: float) -> torch.Tensor:
    """WGA: gradient ascent with each token weighted by p^alpha (weights not differentiated).

    Minimising mean_i p_i^alpha * log p_i lowers the likelihood of the forget answers, most
    for the tokens the model is most confident about.
    """
    logp, mask = batch_token_logprobs(model, batch)
    weight = logp.detach().exp().pow(alpha) * mask
    return (weight * logp).sum() / mask.sum().clamp(min=1)


def npo_loss(model, batch, *, beta: float, ref_logprob: torch.Tensor) -> torch.Tensor:
    """NPO: -(2/beta) E[log sigmoid(-beta (log p_theta(y|x) - log p_ref(y|x)))], ref = θo."""
    log_ratio = sequence_logprob(model, batch) - ref_logprob
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


def dpo_loss(model, batch, *, beta: float, ref_win: torch.Tensor, ref_lose: torch.Tensor) -> torch.Tensor:
    """DPO for unlearning: preferred = an IDK answer (``batch["win"]``), dispreferred = the
    true answer (``batch["main"]``); -(1/beta) E[log sigmoid(beta (win ratio - lose ratio))]."""
    win = sequence_logprob(model, batch["win"]) - ref_win
    lose = sequence_logprob(model, batch["main"]) - ref_lose
    return -(1.0 / beta) * F.logsigmoid(beta * (win - lose)).mean()


def layer_hidden_states(model, batch, layer: int) -> torch.Tensor:
    """Output of decoder layer ``layer`` (0-based) for every input position."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    return out.hidden_states[layer + 1]  # hidden_states[0] is the embedding output


def rmu_loss(model, batch, *, layer: int, steering: torch.Tensor) -> torch.Tensor:
    """RMU: E_x[(1/|x|) sum_t ||h_theta^(layer)(t) - c u||^2], with ``steering`` = c u fixed."""
    h = layer_hidden_states(model, batch, layer).float()
    mask = batch["attention_mask"].to(h.dtype)
    per_token = ((h - steering.to(h)) ** 2).sum(-1) * mask
    return (per_token.sum(1) / mask.sum(1).clamp(min=1)).mean()


def rmu_steering(d_model: int, scale: float, seed: int) -> torch.Tensor:
    """c * u with u drawn uniformly from [0, 1)^d and normalised to unit length (App. A)."""
    u = torch.rand(d_model, generator=torch.Generator().manual_seed(seed))
    return scale * u / u.norm()


OBJECTIVES = {"wga": wga_loss, "npo": npo_loss, "dpo": dpo_loss, "rmu": rmu_loss}
