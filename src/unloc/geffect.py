"""G-effect probes (seeds/001 Def. 1): how an unlearning objective's gradient moves a risk.

    e = <grad R(D; θ), grad L_u(D_u; θ)>

with R the NLL. A gradient step θ <- θ - lr grad L_u changes R(D) by about -lr e, so on the
forget set D_u (e_u) removal wants e_u << 0, and on the retain set (e_r) retention wants
e_r >= 0. Both are summed over every parameter, and over each group of seeds/001's Fig. 2
legend: the input embedding, the shallow, middle and deep thirds of the decoder layers, and
the LM head (``parameter_groups``).

Choices where seeds/001 leaves room (docs/decisions.md):
- R(D) is the definition's: the mean over D's examples of -log p(answer | question), the sum
  over answer tokens (EOS included), with its exact gradient over the whole probe set
  (accumulated batch by batch), not the authors' minibatch EMA.
- grad L_u(D_u) is the mean of the objective's batch gradients over one fixed pass of its
  batcher (``Batcher.epoch(PROBE_EPOCH)``: the same batches, retain pairs included, at every
  probe), weighted by the forget examples in each batch. L_u is the objective alone, as in
  Figs. 3-7; a run's regularizer gets G-effects of its own (Fig. 8), and the two add up.
- Gradients are taken with respect to every parameter of a plain model (seeds/001 unlearns all
  of them), in fp32, without touching ``.grad`` or any random state, so a probed run trains
  exactly as an unprobed one.

The probe also logs the two risks, the inverse confidence (the mean over forget answer tokens
of 1/p, seeds/001 §4.1) and, when given the objective's β and reference, the mean NPO weight
2 σ(β (log p(s) - log p_ref(s))) per example and the mean TNPO weight per token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from unloc import io
from unloc.data.collate import IGNORE, Encoded, collate
from unloc.models import depth_third
from unloc.scoring import batch_token_logprobs

GROUPS = ("embed", "shallow", "middle", "deep", "lm")
"""seeds/001 Fig. 2's parameter groups; the decoder layers split in thirds of the depth."""
PROBE_EPOCH = -1
"""The batcher epoch whose batches every probe uses for grad L_u (training epochs count from 0)."""


def parameter_groups(model) -> dict[str, list[str]]:
    """The names of the parameters in each of ``GROUPS``, plus "other" (final norm and anything
    outside the decoder layers). A tied LM head is the input embedding's tensor: it is counted
    once, under "embed", and "lm" is empty (its G-effect is reported as NaN)."""
    n_layers = model.config.num_hidden_layers
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    groups: dict[str, list[str]] = {name: [] for name in (*GROUPS, "other")}
    for name, param in model.named_parameters():  # a shared tensor is listed once
        if param is embed:
            groups["embed"].append(name)
        elif param is head:
            groups["lm"].append(name)
        elif ".layers." in name:
            layer = int(name.split(".layers.")[1].split(".")[0])
            groups[depth_third(layer, n_layers)].append(name)
        else:
            groups["other"].append(name)
    return groups


@dataclass(frozen=True)
class NpoReference:
    """What NPO's and TNPO's weights compare with: log p_ref per forget example (sum over its
    answer tokens) and per token (``LossContext.reference_token_logprobs``), and β."""

    beta: float
    sequence: torch.Tensor  # [N]
    tokens: list[torch.Tensor]  # per example, log p at each of its positions


@dataclass(frozen=True)
class RiskPass:
    """R(D) and its gradient, and the per-token log-probabilities the pass saw."""

    risk: float
    gradient: list[torch.Tensor]
    token_logprobs: list[torch.Tensor]  # per example: log p of its answer tokens


def _params(model) -> tuple[list[str], list[torch.nn.Parameter]]:
    named = list(model.named_parameters())
    return [n for n, _ in named], [p for _, p in named]


@contextmanager
def _with_grad(params: Sequence[torch.nn.Parameter]):
    """Every parameter requires grad inside the block, and is as it was after."""
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p, flag in zip(params, before):
            p.requires_grad_(flag)


def _accumulate(total: list[torch.Tensor] | None, grads) -> list[torch.Tensor]:
    grads = [torch.zeros_like(p) if g is None else g for g, p in grads]
    return grads if total is None else [t + g for t, g in zip(total, grads)]


def risk_pass(model, examples: Sequence[Encoded], pad_id: int, batch_size: int, device="cpu") -> RiskPass:
    """R(D) = mean over ``examples`` of the answer's NLL (summed over its tokens), its exact
    gradient over every parameter, and each example's answer-token log-probabilities."""
    _, params = _params(model)
    total, risk, token_logprobs = None, 0.0, []
    with _with_grad(params):
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            batch = {k: v.to(device) for k, v in collate(list(chunk), pad_id).items()}
            logp, mask = batch_token_logprobs(model, batch)
            nll = -(logp.sum() / len(examples))
            total = _accumulate(total, zip(torch.autograd.grad(nll, params, allow_unused=True), params))
            risk += float(nll.detach())
            token_logprobs.extend(row[m].detach().double().cpu() for row, m in zip(logp, mask))
    return RiskPass(risk, total, token_logprobs)


def objective_gradient(model, loss_fn: Callable[[dict], torch.Tensor], batches: Sequence[dict],
                       main: str = "forget") -> list[torch.Tensor]:
    """grad L_u(D_u): the mean of ``loss_fn``'s batch gradients, each weighted by its share of
    the ``main`` examples."""
    _, params = _params(model)
    n = sum(len(b[main]["input_ids"]) for b in batches)
    total = None
    with _with_grad(params):
        for batch in batches:
            loss = loss_fn(batch) * (len(batch[main]["input_ids"]) / n)
            total = _accumulate(total, zip(torch.autograd.grad(loss, params, allow_unused=True), params))
    return total


def dot_by_group(names: Sequence[str], a: Sequence[torch.Tensor], b: Sequence[torch.Tensor],
                 groups: dict[str, list[str]]) -> dict[str, float]:
    """<a, b> over all parameters ("total") and over each group (NaN for an empty group), in float64."""
    per_param = {n: float((x.double() * y.double()).sum()) for n, x, y in zip(names, a, b)}
    out = {"total": sum(per_param.values())}
    for group, members in groups.items():
        out[group] = sum(per_param[n] for n in members) if members else float("nan")
    return out


def npo_weights(token_logprobs: Sequence[torch.Tensor], examples: Sequence[Encoded],
                reference: NpoReference) -> tuple[float, float]:
    """The mean NPO weight over ``examples`` and the mean TNPO weight over their answer tokens,
    from each example's answer-token log-probabilities (``RiskPass.token_logprobs``)."""
    sequence = torch.stack([t.sum() for t in token_logprobs])
    npo = 2 * torch.sigmoid(reference.beta * (sequence - reference.sequence.double()))
    # the reference's row holds every position; the answer tokens are those whose next label is scored
    ref = torch.cat([r.double()[torch.tensor(e.labels[1:]) != IGNORE] for r, e in zip(reference.tokens, examples)])
    tnpo = 2 * torch.sigmoid(reference.beta * (torch.cat(list(token_logprobs)) - ref))
    return float(npo.mean()), float(tnpo.mean())


COLUMNS = ["step", *(f"{e}_{g}" for e in ("e_u", "e_r") for g in ("total", *GROUPS, "other")),
           "e_u_regularizer", "e_r_regularizer",
           "risk_forget", "risk_retain", "inverse_confidence", "npo_weight", "tnpo_weight"]


def probe(model, loss_fn: Callable[[dict], torch.Tensor], objective_batches: Sequence[dict],
          forget: Sequence[Encoded], retain: Sequence[Encoded], pad_id: int, batch_size: int,
          reference: NpoReference | None = None, device="cpu",
          regularizer_fn: Callable[[dict], torch.Tensor] | None = None) -> dict[str, float]:
    """One row of the probe log (``COLUMNS`` but the step) at the model's current parameters.

    ``loss_fn`` is the unlearning objective L_u (seeds/001 Figs. 3-7 probe it without a
    regularizer); ``regularizer_fn``, the weighted regularizer a run adds to it, gets its own
    total G-effects (``e_u_regularizer``, ``e_r_regularizer``; NaN without one). G-effects add
    up: the training loss's is the sum of the two."""
    names, _ = _params(model)
    groups = parameter_groups(model)
    grad_l = objective_gradient(model, loss_fn, objective_batches)
    grad_reg = objective_gradient(model, regularizer_fn, objective_batches) if regularizer_fn else None
    on_forget = risk_pass(model, forget, pad_id, batch_size, device)
    on_retain = risk_pass(model, retain, pad_id, batch_size, device)
    row: dict[str, float] = {}
    for prefix, risk in (("e_u", on_forget), ("e_r", on_retain)):
        row.update({f"{prefix}_{g}": v for g, v in dot_by_group(names, risk.gradient, grad_l, groups).items()})
        row[f"{prefix}_regularizer"] = (dot_by_group(names, risk.gradient, grad_reg, {})["total"] if grad_reg
                                        else float("nan"))
    tokens = torch.cat(on_forget.token_logprobs)
    row.update(risk_forget=on_forget.risk, risk_retain=on_retain.risk,
               inverse_confidence=float(torch.exp(-tokens).mean()))
    npo, tnpo = (npo_weights(on_forget.token_logprobs, forget, reference) if reference
                 else (float("nan"), float("nan")))
    row.update(npo_weight=npo, tnpo_weight=tnpo)
    return row


class Prober:
    """The ``on_step`` callback of the training loop that probes every ``every`` steps (and
    before the first, ``start()``) and writes the log to ``path`` after each probe (atomically,
    so an interrupted run leaves a complete CSV of the probes so far)."""

    def __init__(self, every: int, path, probe_fn: Callable[[], dict[str, float]]):
        self.every, self.path, self.probe_fn, self.rows = every, path, probe_fn, []

    def start(self) -> None:
        self._record(0)

    def __call__(self, step: int) -> None:
        if step % self.every == 0:
            self._record(step)

    def _record(self, step: int) -> None:
        self.rows.append({"step": step, **self.probe_fn()})
        if self.path is not None:
            io.write_csv(self.path, self.rows, COLUMNS)
