"""Unlearning objectives and regularizers (seeds/000 App. A; seeds/001 §1.2 of the digest).

The losses are pure functions of a model and a batch, plus what they compare against
(reference log-likelihoods, a steering vector, a frozen reference model, a target model's
activations), passed in.

Each entry of ``OBJECTIVES`` and ``REGULARIZERS`` declares the sub-batches it reads
(``needs``: forget, retain, idk) and a ``prepare(ctx, settings) -> loss_fn``. ``ctx``
(``LossContext``) computes what the loss needs once, on demand, on the model as it is before
training (θo for Section 4): reference log-probabilities, a frozen copy of that model, the
steering vector. ``loss_fn(batch)`` then maps a dict of the declared sub-batches to a scalar.

A config block ``unlearn.<objective>`` holds the objective's learning rate, its own settings
and optionally a regularizer, ``regularizer: {name: kl, weight: 1.0}``, whose loss is added
with that weight: ``L = L_objective + weight * L_regularizer``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from unloc.data.collate import IGNORE, Encoded, collate
from unloc.models import last_layer_of_third
from unloc.precision import autocast_context
from unloc.registry import Choice, ConfigError, Registry, Spec, parse_settings, setting, to_dict
from unloc.scoring import answer_nll, batch_logits, batch_token_logprobs, layer_hidden_states, sequence_logprob

LossFn = Callable[[dict], torch.Tensor]

SUB_BATCHES = {
    "forget": "the forget set: each step's main batch (an epoch is one pass over it)",
    "retain": "a batch of the retain set drawn at random beside each forget batch",
    "idk": "a refusal answer to each forget question, at the forget batch's positions (DPO's preferred answer)",
}


@dataclass(frozen=True, kw_only=True)
class LossSpec(Spec):
    """``fn`` is ``prepare(ctx, settings) -> loss_fn``; ``needs`` names sub-batches of SUB_BATCHES;
    ``label`` is the name tables and figures print (default: the name in capitals); ``target``
    says it reads a target model's activations (``ctx.target``: θr), which the unlearn stage
    then loads (``--target``)."""

    label: str = ""
    target: bool = False

    def __post_init__(self):
        if not self.label:
            object.__setattr__(self, "label", self.name.upper())
        unknown = [n for n in self.needs if n not in SUB_BATCHES]
        if unknown or "forget" in self.needs[1:]:
            raise ValueError(f"{self.name}: needs names sub-batches of {', '.join(SUB_BATCHES)}, got {self.needs}")


OBJECTIVES: Registry[LossSpec] = Registry("objective", LossSpec)
REGULARIZERS: Registry[LossSpec] = Registry("regularizer", LossSpec)


# --------------------------------------------------------------------------- what a loss may ask for


@dataclass
class LossContext:
    """What ``prepare`` may ask for, each computed once on demand.

    ``model`` is the model being trained, as it is before training: the reference of NPO, DPO
    and the KL regularizer. ``sets`` holds the encoded examples of each sub-batch the run uses.
    ``target`` is a separate model whose activations an objective matches (θr for L2 MLP); the
    unlearn stage sets it, the other objectives ignore it.
    """

    model: torch.nn.Module
    sets: dict[str, list[Encoded]]
    pad_id: int
    device: str = "cpu"
    precision: str = "fp32"
    eval_batch_size: int = 32
    target: torch.nn.Module | None = None
    _cache: dict = field(default_factory=dict)

    def reference_logprobs(self, name: str) -> torch.Tensor:
        """log p(y|x) of every example of sub-batch set ``name`` under the model before training."""
        if ("logprobs", name) not in self._cache:
            self._cache["logprobs", name] = _sequence_logprobs(
                self.model.to(self.device), self.sets[name], self.pad_id, self.eval_batch_size, self.device,
                self.precision)
        return self._cache["logprobs", name]

    def reference_token_logprobs(self, name: str) -> list[torch.Tensor]:
        """Per example of sub-batch set ``name``, log p(token | prefix) at each of its positions
        (``scoring.token_logprobs``' row, 0 off the answer) under the model before training;
        ``token_reference`` lays them out for a batch."""
        if ("token_logprobs", name) not in self._cache:
            self._cache["token_logprobs", name] = _token_logprobs_each(
                self.model.to(self.device), self.sets[name], self.pad_id, self.eval_batch_size, self.device,
                self.precision)
        return self._cache["token_logprobs", name]

    def reference_model(self) -> torch.nn.Module:
        """A frozen copy of the model before training (token-wise KL)."""
        if "model" not in self._cache:
            ref = copy.deepcopy(self.model).to(self.device).eval()
            for p in ref.parameters():
                p.requires_grad_(False)
            self._cache["model"] = ref
        return self._cache["model"]

    def target_model(self, need: str) -> torch.nn.Module:
        """``target`` frozen (no gradients) in eval mode on ``device``; ``need`` names the objective in errors."""
        if self.target is None:
            raise ValueError(f"{need} matches the activations of a target model (θr), but LossContext.target is None")
        if self.target is self.model:
            raise ValueError(f"{need}: the target must be a separate model, not the model being trained")
        for p in self.target.parameters():
            p.requires_grad_(False)
        return self.target.to(self.device).eval()

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size


@torch.no_grad()
def _sequence_logprobs(model, examples, pad_id, batch_size, device, precision) -> torch.Tensor:
    model.eval()
    with autocast_context(device, precision):
        batches = (collate(examples[i:i + batch_size], pad_id) for i in range(0, len(examples), batch_size))
        out = [sequence_logprob(model, {k: v.to(device) for k, v in batch.items()}) for batch in batches]
    return torch.cat(out)


@torch.no_grad()
def _token_logprobs_each(model, examples, pad_id, batch_size, device, precision) -> list[torch.Tensor]:
    model.eval()
    out = []
    with autocast_context(device, precision):
        for i in range(0, len(examples), batch_size):
            chunk = examples[i:i + batch_size]
            batch = collate(chunk, pad_id)
            logp, _ = batch_token_logprobs(model, {k: v.to(device) for k, v in batch.items()})
            # right padding: an example's positions are its first len - 1 columns, whatever the batch
            out.extend(row[:len(e.input_ids) - 1].float().cpu() for row, e in zip(logp, chunk))
    return out


def token_reference(per_example: list[torch.Tensor], index: torch.Tensor, width: int) -> torch.Tensor:
    """[B, width] reference token log-probs of a batch's examples (``index``), right-padded with 0
    like the batch's own ``token_logprobs``."""
    out = torch.zeros(len(index), width)
    for row, i in enumerate(index.tolist()):
        values = per_example[i][:width]
        out[row, :len(values)] = values
    return out


# --------------------------------------------------------------------------- objective blocks


@dataclass(frozen=True, kw_only=True)
class ObjectiveRun:
    """One ``unlearn.<objective>`` config block, parsed: the objective and its settings, its
    learning rate, and the regularizer added to it (if any)."""

    objective: Choice
    lr: float
    regularizer: Choice | None = None

    def to_dict(self) -> dict:
        return {"lr": self.lr, "regularizer": None if self.regularizer is None else self.regularizer.to_dict(),
                **to_dict(self.objective.settings)}

    @property
    def target(self) -> bool:
        """Whether the objective or its regularizer reads a target model (θr)."""
        return self.objective.spec.target or (self.regularizer is not None and self.regularizer.spec.target)

    @property
    def needs(self) -> tuple[str, ...]:
        """The sub-batches of every step: the objective's, then the regularizer's."""
        extra = () if self.regularizer is None else self.regularizer.spec.needs
        return tuple(dict.fromkeys(("forget", *self.objective.spec.needs, *extra)))


@dataclass(frozen=True)
class _BlockCommon:
    lr: float = setting(help="learning rate of this objective's runs (calibrated per model)", exclusive_minimum=0)
    regularizer: Choice | None = setting(None, "a regularizer added to the loss: {name: <a regularizer>, weight: 1.0, "
                                               "<its settings>}; null: none", registry=REGULARIZERS,
                                         common={"weight": 1.0})


def parse_objective(name: str, block: Mapping | None, path: str) -> ObjectiveRun:
    """``unlearn.<name>`` as an ObjectiveRun; errors name the key (``path``)."""
    spec = OBJECTIVES.get(name, path)
    block = dict(block or {})
    common_keys = {"lr", "regularizer"}
    common = parse_settings(_BlockCommon, {k: v for k, v in block.items() if k in common_keys}, path)
    try:
        settings = spec.parse({k: v for k, v in block.items() if k not in common_keys}, path)
    except ConfigError as e:
        raise ConfigError(f"{e} (every objective also takes lr and regularizer)") from None
    if common.regularizer is not None:
        weight = common.regularizer.common["weight"]
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ConfigError(f"{path}.regularizer.weight: expected a number, got {weight!r}")
    return ObjectiveRun(objective=Choice(spec, settings), lr=common.lr, regularizer=common.regularizer)


def prepare_loss_parts(run: ObjectiveRun, ctx: LossContext) -> tuple[LossFn, LossFn | None]:
    """The objective's loss and the weighted regularizer's (None without one), apart."""
    objective = run.objective.spec.fn(ctx, run.objective.settings)
    if run.regularizer is None:
        return objective, None
    regularizer = run.regularizer.spec.fn(ctx, run.regularizer.settings)
    weight = float(run.regularizer.common["weight"])
    return objective, lambda batch: weight * regularizer(batch)


def combine_losses(objective: LossFn, regularizer: LossFn | None) -> LossFn:
    """The loss of one step from ``prepare_loss_parts``: the objective's plus the regularizer's."""
    if regularizer is None:
        return objective
    return lambda batch: objective(batch) + regularizer(batch)


def prepare_loss(run: ObjectiveRun, ctx: LossContext) -> LossFn:
    """The loss of one step: the objective's, plus the weighted regularizer's."""
    return combine_losses(*prepare_loss_parts(run, ctx))


# --------------------------------------------------------------------------- pure losses


def forget_retain_nll(model, forget, retain, lambda_retain: float) -> torch.Tensor:
    """Injection loss: L_forget + lambda_retain * L_retain."""
    return answer_nll(model, forget) + lambda_retain * answer_nll(model, retain)


def ga_loss(model, batch) -> torch.Tensor:
    """GA: the mean log-likelihood of the answer tokens; minimising it is gradient ascent on the NLL."""
    return -answer_nll(model, batch)


def wga_loss(model, batch, *, alpha: float) -> torch.Tensor:
    """WGA: gradient ascent with each token weighted by p^alpha (weights not differentiated).

    Minimising mean_i p_i^alpha * log p_i lowers the likelihood of the forget answers, most
    for the tokens the model is most confident about. This is seeds/001's sign (eq. 2 and its
    code); seeds/000 App. A prints the opposite sign, which would raise the likelihood, and
    uses α = 0.1 where seeds/001 uses 5 and 7 (docs/decisions.md).
    """
    logp, mask = batch_token_logprobs(model, batch)
    weight = logp.detach().exp().pow(alpha) * mask
    return (weight * logp).sum() / mask.sum().clamp(min=1)


def tnpo_loss(model, batch, *, beta: float, ref_token_logprobs: torch.Tensor, alpha: float = 0.0) -> torch.Tensor:
    """TNPO (seeds/001 eq. 6): gradient ascent with each answer token weighted by
    w = 2 p^β / (p^β + p_ref^β) = 2 σ(β (log p − log p_ref)), times p^α for WTNPO (App. D.2);
    weights not differentiated, a mean over the batch's answer tokens (the authors' code).

    The sigmoid form is exact where the code's 2 p^β / (p^β + p_ref^β + 1e-5) is not (when both
    probabilities are tiny). At θ = θ_ref every weight is 1 (TNPO is GA there) or p^α (WTNPO is
    WGA there); a token already less likely than under θ_ref gets a weight below 1 and stops
    being pushed, as NPO does per sequence.
    """
    logp, mask = batch_token_logprobs(model, batch)
    with torch.no_grad():
        log_ratio = logp.float() - ref_token_logprobs.to(logp.device)
        weight = 2 * torch.sigmoid(beta * log_ratio) * torch.exp(alpha * logp.float()) * mask
    return (weight * logp).sum() / mask.sum().clamp(min=1)


def npo_loss(model, batch, *, beta: float, ref_logprob: torch.Tensor) -> torch.Tensor:
    """NPO: -(2/beta) E[log sigmoid(-beta (log p_theta(y|x) - log p_ref(y|x)))]."""
    log_ratio = sequence_logprob(model, batch) - ref_logprob
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


def dpo_loss(model, win, lose, *, beta: float, ref_win: torch.Tensor, ref_lose: torch.Tensor) -> torch.Tensor:
    """DPO for unlearning: preferred = an IDK answer (``win``), dispreferred = the true answer
    (``lose``); -(1/beta) E[log sigmoid(beta (win ratio - lose ratio))]."""
    win_ratio = sequence_logprob(model, win) - ref_win
    lose_ratio = sequence_logprob(model, lose) - ref_lose
    return -(1.0 / beta) * F.logsigmoid(beta * (win_ratio - lose_ratio)).mean()


def po_loss(model, idk) -> torch.Tensor:
    """PO (seeds/001 §4.3): the NLL of a refusal answer to each forget question; minimising it
    teaches the refusal without pushing the true answer down."""
    return answer_nll(model, idk)


def rmu_loss(model, batch, *, layer: int, steering: torch.Tensor) -> torch.Tensor:
    """RMU: E_x[(1/|x|) sum_t ||h_theta^(layer)(t) - c u||^2], with ``steering`` = c u fixed."""
    h = layer_hidden_states(model, batch, layer).float()
    mask = batch["attention_mask"].to(h.dtype)
    per_token = ((h - steering.to(h)) ** 2).sum(-1) * mask
    return (per_token.sum(1) / mask.sum(1).clamp(min=1)).mean()


def rmu_steering(d_model: int, scale: float, seed: int, unit: bool = True) -> torch.Tensor:
    """c * u with u drawn uniformly from [0, 1)^d, normalised to unit length (seeds/000 App. A)
    unless ``unit`` is False (seeds/001's code: u as drawn, so its length grows as sqrt(d/3))."""
    u = torch.rand(d_model, generator=torch.Generator().manual_seed(seed))
    return scale * u / u.norm() if unit else scale * u


def mlp_outputs(model, batch) -> list[torch.Tensor]:
    """The output of every decoder layer's MLP (its ``down_proj``), one [batch, seq, d_model] each.

    Read by forward hooks on ``model.model.layers[i].mlp`` during one pass of the decoder stack
    (``model.model``: the LM head is not needed); the hooks are removed whatever happens.
    """
    layers = model.model.layers
    out: list = [None] * len(layers)

    def keep(i):
        def hook(module, args, output):
            out[i] = output
        return hook

    handles = [layer.mlp.register_forward_hook(keep(i)) for i, layer in enumerate(layers)]
    try:
        model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return out


def l2_mlp_loss(model, batch, *, target_outputs: list[torch.Tensor], alpha: float) -> torch.Tensor:
    """L2 MLP: the distance of the model's MLP outputs to a target's (θr's) on the same batch.

    L = (1/n_layers) Σ_l (1/N) Σ_{(b,t): attention_mask[b,t]=1} Σ_d |h_θ^l[b,t,d] − h_r^l[b,t,d]|^α,
    with N the number of non-padding positions of the whole batch: every token of the forget QA,
    prompt and answer alike (a token mean, not a mean of row means). α = 2 is the squared L2
    distance of seeds/000 §4 / Fig. 1. Computed in fp32.
    """
    mask = batch["attention_mask"].bool()
    per_layer = []
    for h, r in zip(mlp_outputs(model, batch), target_outputs, strict=True):
        gap = (h.float() - r.float()).abs()
        # d|x|^α/dx is infinite at 0 for α < 1: exact ties (a layer θ and θr still share) get a zero gradient
        dist = torch.where(gap > 0, gap.clamp(min=torch.finfo(gap.dtype).tiny) ** alpha, 0.0).sum(-1)
        per_layer.append(dist[mask].sum() / mask.sum().clamp(min=1))
    return torch.stack(per_layer).mean()


def answer_position_states(model, batch, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder layer ``layer``'s output at the positions that predict an answer token (the last
    prompt token and every answer token but the last: phi([x, y_<i]) for i = 1..|y|), and
    their [B, T-1] mask."""
    h = layer_hidden_states(model, batch, layer)[:, :-1].float()
    return h, batch["labels"][:, 1:] != IGNORE


def rr_loss(model, reference, batch, *, layer: int) -> torch.Tensor:
    """RR (seeds/001 eq. 19, read as RMU's retain term): E_(x,y) (1/|y|) Σ_i ||phi([x, y_<i]; θ)
    − phi([x, y_<i]; θ_o)||², phi = decoder layer ``layer``'s output, θ_o frozen."""
    h, mask = answer_position_states(model, batch, layer)
    with torch.no_grad():
        ref, _ = answer_position_states(reference, batch, layer)
    per_token = ((h - ref) ** 2).sum(-1) * mask
    return (per_token.sum(1) / mask.sum(1).clamp(min=1)).mean()


def kl_to_reference(model, reference, batch, *, direction: str = "model_to_reference") -> torch.Tensor:
    """Token-wise KL between the model's and a frozen reference's next-token distributions,
    averaged over the batch's answer tokens (EOS included).

    ``model_to_reference`` is KL(p_θ || p_ref), the direction seeds/001 eq. 18 prints;
    ``reference_to_model`` is KL(p_ref || p_θ).
    """
    logp = torch.log_softmax(batch_logits(model, batch)[:, :-1].float(), -1)
    with torch.no_grad():
        ref = torch.log_softmax(batch_logits(reference, batch)[:, :-1].float(), -1)
    if direction == "model_to_reference":
        per_token = (logp.exp() * (logp - ref)).sum(-1)
    elif direction == "reference_to_model":
        per_token = (ref.exp() * (ref - logp)).sum(-1)
    else:
        raise ValueError(f"unknown KL direction {direction!r}: allowed model_to_reference, reference_to_model")
    mask = batch["labels"][:, 1:] != IGNORE
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


# --------------------------------------------------------------------------- objectives


@OBJECTIVES.register("ga", needs=("forget",))
def ga(ctx: LossContext, settings) -> LossFn:
    """GA: gradient ascent on the forget answers' NLL (seeds/001 §1.2; WGA with α = 0)."""
    return lambda batch: ga_loss(ctx.model, batch["forget"])


@dataclass(frozen=True)
class WgaSettings:
    alpha: float = setting(0.1, "exponent of the p^alpha token weights (seeds/000 App. A: 0.1)")


@OBJECTIVES.register("wga", settings=WgaSettings, needs=("forget",))
def wga(ctx: LossContext, settings: WgaSettings) -> LossFn:
    """WGA: gradient ascent weighted per token by p^α (seeds/000 App. A, seeds/001 eq. 2)."""
    return lambda batch: wga_loss(ctx.model, batch["forget"], alpha=settings.alpha)


@dataclass(frozen=True)
class NpoSettings:
    beta: float = setting(0.5, "inverse temperature β (seeds/000 App. A: 0.5)", exclusive_minimum=0)


@OBJECTIVES.register("npo", settings=NpoSettings, needs=("forget",))
def npo(ctx: LossContext, settings: NpoSettings) -> LossFn:
    """NPO against the model before unlearning (seeds/000 App. A)."""
    ref = ctx.reference_logprobs("forget")

    def loss(batch):
        forget = batch["forget"]
        return npo_loss(ctx.model, forget, beta=settings.beta, ref_logprob=ref[forget["index"]])

    return loss


@dataclass(frozen=True)
class TnpoSettings:
    beta: float = setting(4.0, "inverse temperature β of the token weights (seeds/001 Table 1: 4 at 1%/5%, "
                               "5 at 10%)", exclusive_minimum=0)


def _token_weighted(ctx: LossContext, beta: float, alpha: float) -> LossFn:
    ref = ctx.reference_token_logprobs("forget")

    def loss(batch):
        forget = batch["forget"]
        reference = token_reference(ref, forget["index"], forget["input_ids"].shape[1] - 1)
        return tnpo_loss(ctx.model, forget, beta=beta, alpha=alpha, ref_token_logprobs=reference)

    return loss


@OBJECTIVES.register("tnpo", settings=TnpoSettings, needs=("forget",))
def tnpo(ctx: LossContext, settings: TnpoSettings) -> LossFn:
    """TNPO: NPO's weight per token, against the model before unlearning (seeds/001 eq. 6)."""
    return _token_weighted(ctx, settings.beta, 0.0)


@dataclass(frozen=True)
class WtnpoSettings:
    beta: float = setting(5.0, "inverse temperature β of TNPO's weights (seeds/001 Table 1: 5 at 1%/5%, 7 at 10%)",
                          exclusive_minimum=0)
    alpha: float = setting(1.5, "exponent of WGA's p^α factor (seeds/001 Table 1: 1.5)", minimum=0)


@OBJECTIVES.register("wtnpo", settings=WtnpoSettings, needs=("forget",))
def wtnpo(ctx: LossContext, settings: WtnpoSettings) -> LossFn:
    """WTNPO: TNPO's token weights times WGA's p^α (seeds/001 App. D.2)."""
    return _token_weighted(ctx, settings.beta, settings.alpha)


@OBJECTIVES.register("po", needs=("forget", "idk"))
def po(ctx: LossContext, settings) -> LossFn:
    """PO: fine-tune on a refusal answer to each forget question (seeds/001 §4.3)."""
    return lambda batch: po_loss(ctx.model, batch["idk"])


@dataclass(frozen=True)
class DpoSettings:
    beta: float = setting(0.5, "inverse temperature β (seeds/000 App. A: 0.5)", exclusive_minimum=0)


@OBJECTIVES.register("dpo", settings=DpoSettings, needs=("forget", "idk"))
def dpo(ctx: LossContext, settings: DpoSettings) -> LossFn:
    """DPO with an IDK answer preferred over the true one, against the model before unlearning."""
    ref_lose, ref_win = ctx.reference_logprobs("forget"), ctx.reference_logprobs("idk")

    def loss(batch):
        at = batch["forget"]["index"]
        return dpo_loss(ctx.model, batch["idk"], batch["forget"], beta=settings.beta, ref_win=ref_win[at],
                        ref_lose=ref_lose[at])

    return loss


@dataclass(frozen=True)
class RmuSettings:
    layer: int | Literal["shallow", "middle", "deep"] = setting(
        help="0-based decoder layer whose output is steered (the paper: 21 of 32), or a third of the depth, "
             "for its deepest layer (seeds/001's shallow, middle and deep RMU)", minimum=0)
    scale: float = setting(2.0, "c: the length of the steering vector (seeds/000 App. A: 2; 0 steers to zero, "
                                "seeds/001's Tables 8-10)", minimum=0)
    steering_seed: int = setting(0, "seed of the random direction u")
    unit_direction: bool = setting(True, "normalise u to unit length (seeds/000 App. A); false: u as drawn from "
                                         "[0, 1)^d (seeds/001's code)")


@OBJECTIVES.register("rmu", settings=RmuSettings, needs=("forget",))
def rmu(ctx: LossContext, settings: RmuSettings) -> LossFn:
    """RMU: steer a layer's hidden states on forget inputs towards a fixed random vector c·u."""
    n_layers = ctx.model.config.num_hidden_layers
    layer = settings.layer if isinstance(settings.layer, int) else last_layer_of_third(settings.layer, n_layers)
    if layer >= n_layers:
        raise ValueError(f"rmu.layer {layer}: the model has {n_layers} layers")
    steering = rmu_steering(ctx.hidden_size, settings.scale, settings.steering_seed,
                            settings.unit_direction).to(ctx.device)
    return lambda batch: rmu_loss(ctx.model, batch["forget"], layer=layer, steering=steering)


@dataclass(frozen=True)
class L2MlpSettings:
    alpha: float = setting(2.0, "exponent of the distance |h_θ − h_r|^α, summed over d_model "
                                "(seeds/000 App. F's α = 2: squared L2)", exclusive_minimum=0)


@OBJECTIVES.register("l2_mlp", settings=L2MlpSettings, needs=("forget",), label="L2 MLP", target=True)
def l2_mlp(ctx: LossContext, settings: L2MlpSettings) -> LossFn:
    """L2 MLP: pull every layer's MLP output on forget inputs to θr's (seeds/000 §4, Fig. 1).

    θr's outputs are computed per batch (each step's rows differ), without gradients, under the
    run's precision; ``ctx.target`` must hold θr.
    """
    target = ctx.target_model("l2_mlp")

    def loss(batch):
        forget = batch["forget"]
        with torch.no_grad(), autocast_context(ctx.device, ctx.precision):
            goal = mlp_outputs(target, forget)
        return l2_mlp_loss(ctx.model, forget, target_outputs=goal, alpha=settings.alpha)

    return loss


# --------------------------------------------------------------------------- regularizers


@REGULARIZERS.register("gd", needs=("retain",))
def gd(ctx: LossContext, settings) -> LossFn:
    """GD: the retain set's NLL (gradient descent on it; seeds/001 eq. 17)."""
    return lambda batch: answer_nll(ctx.model, batch["retain"])


@dataclass(frozen=True)
class KlSettings:
    direction: Literal["model_to_reference", "reference_to_model"] = setting("model_to_reference",
                             "model_to_reference: KL(p_θ || p_ref), as seeds/001 eq. 18 prints; "
                             "reference_to_model: KL(p_ref || p_θ)")


@REGULARIZERS.register("kl", settings=KlSettings, needs=("retain",))
def kl(ctx: LossContext, settings: KlSettings) -> LossFn:
    """KL: token-wise KL to the model before unlearning on retain answers (seeds/001 eq. 18)."""
    reference = ctx.reference_model()
    return lambda batch: kl_to_reference(ctx.model, reference, batch["retain"], direction=settings.direction)


@dataclass(frozen=True)
class RrSettings:
    layer: int | None = setting(None, "0-based decoder layer whose output is held to θo's; null: the last",
                                minimum=0)


@REGULARIZERS.register("rr", settings=RrSettings, needs=("retain",))
def rr(ctx: LossContext, settings: RrSettings) -> LossFn:
    """RR: hold a layer's output on retain inputs to the model before unlearning (seeds/001 eq. 19)."""
    n_layers = ctx.model.config.num_hidden_layers
    layer = n_layers - 1 if settings.layer is None else settings.layer
    if layer >= n_layers:
        raise ValueError(f"rr.layer {layer}: the model has {n_layers} layers")
    reference = ctx.reference_model()
    return lambda batch: rr_loss(ctx.model, reference, batch["retain"], layer=layer)
