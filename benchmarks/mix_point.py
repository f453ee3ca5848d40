"""One mixing point of Table 2: its wall time, the FLOPs it does, and how close it runs to the
machine's dense-matmul rate, measured in the same run.

A point scores every curve metric of one model (ES, FS, RS, FQ, MU and its nine parts): a
teacher-forced pass over each TOFU role's answers and greedy generation for ROUGE-L. Its FLOPs are
counted as 2 x parameters per token the model processes (padding included, as the matmuls do),
split into scored tokens and generated ones (every decoding step processes one token per row).
The bound is a dense fp32 matmul of the same threads, in two shapes: a large square one (the
machine's rate) and one of the tiny model's own MLP shape (what its matmuls could reach). A point
at ratio r takes 1/r times the time its FLOPs need at that rate.

    python benchmarks/mix_point.py [--config config.yaml] [--model results/tiny/theta_o/s7/delta.safetensors]
                                   [--metrics es]

The baseline of the same run is the point scored with the model's full logits (the LM head on
every answer position, padding included); the two are timed interleaved and must agree on every
metric. With metrics that read no perturbed answers of some roles (ES alone: Table 6's sweeps), the same
point is timed again scoring them anyway, the baseline that answer-only passes are compared with.

Without --model it uses a freshly initialised model of the config's tiny architecture and a
tokenizer trained on the config's minitofu world (a few seconds); with it, any pipeline artifact.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from unloc.checkpoints import load_checkpoint
from unloc.config import check_config, load_config
from unloc.data import build_dataset, load_role, write_dataset
from unloc.metrics import tofu
from unloc.metrics.curve import PointScores, evaluate_point, perturbed_roles
from unloc.metrics.tofu import TofuEvalConfig
from unloc.models import build_tiny_llama, train_tokenizer
from unloc.stages import _tokenizer_texts

ROLES = ("forget_perturbed", "retain_perturbed", "real_authors_perturbed", "world_facts_perturbed")


class TokenCounter:
    """Tokens through the decoder's forward passes (scoring runs the LM head apart, on real answer
    positions): one call with more than one position is a scoring (or prompt) pass, one with a
    single position per row a decoding step."""

    def __init__(self, model):
        self.scored = self.generated = 0
        self.seconds = {"scored": 0.0, "generated": 0.0}
        self._start = None
        model.register_forward_pre_hook(self._before, with_kwargs=True)
        model.register_forward_hook(self._after, with_kwargs=True)

    def _before(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self._kind = "generated" if ids.shape[1] == 1 else "scored"
        self._tokens = ids.numel()
        self._start = time.perf_counter()

    def _after(self, module, args, kwargs, output):
        self.seconds[self._kind] += time.perf_counter() - self._start
        if self._kind == "generated":
            self.generated += self._tokens
        else:
            self.scored += self._tokens


def dense_matmul_flops(m: int, k: int, n: int, seconds: float = 2.0) -> float:
    """FLOP/s of repeated fp32 [m, k] @ [k, n] matmuls, for about ``seconds``."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    return 2 * m * k * n * reps / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="a config merged over config.yaml (default: config.yaml)")
    p.add_argument("--model", default=None, help="a checkpoint or delta; default: the config's tiny model, untrained")
    p.add_argument("--data", default=None, help="dataset directory; default: the config's, generated here")
    p.add_argument("--threads", type=int, default=1, help="torch threads (mix_eval jobs run on 1)")
    p.add_argument("--repeats", type=int, default=3, help="points timed per variant; the fastest is reported")
    p.add_argument("--metrics", nargs="+", default=None, help="curve metrics (default: the config's mix.metrics)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    config = load_config(args.config)
    experiment = check_config(config)
    tmp = tempfile.TemporaryDirectory()
    data = args.data or str(Path(tmp.name) / "data")
    if args.data is None:
        write_dataset(build_dataset(config["data"]), data)
    if args.model:
        model, tokenizer = load_checkpoint(args.model)
    else:
        arch = {**config["model"]["tiny"], "max_length": config["model"]["max_length"]}
        tokenizer = train_tokenizer(_tokenizer_texts(data), arch["vocab_size"])
        model = build_tiny_llama(arch, tokenizer, seed=0).eval()
    roles = {r: load_role(data, r) for r in ROLES}
    mix = experiment.mix
    cfg = TofuEvalConfig(max_length=config["model"]["max_length"], batch_size=mix.batch_size,
                         max_new_tokens=mix.max_new_tokens, system_prompt=config["model"]["system_prompt"])
    reference = torch.linspace(0.2, 2.0, len(roles["forget_perturbed"]), dtype=torch.float64)
    n_params = sum(p.numel() for p in model.parameters())

    metrics = args.metrics or mix.metrics

    def timed_point(scored_roles, full_logits=False):
        """(seconds, token counter, row) of one point; ``full_logits``: the baseline that runs the LM
        head on every answer position, padding included, as the model's own forward does."""
        decoder = model.get_decoder()  # every pass goes through it, once, whoever calls it
        counter = TokenCounter(decoder)
        saved = tofu.HEAD_IS_LOGITS
        tofu.HEAD_IS_LOGITS = frozenset() if full_logits else saved
        try:
            start = time.perf_counter()
            with torch.no_grad():
                row = evaluate_point(PointScores(model, tokenizer, roles, cfg, experiment.eval.es_convention, reference,
                                                 perturbed_roles=scored_roles), metrics)
            return time.perf_counter() - start, counter, row
        finally:
            tofu.HEAD_IS_LOGITS = saved
            decoder._forward_hooks.clear()
            decoder._forward_pre_hooks.clear()

    def fastest(variants):
        """The fastest of ``args.repeats`` points of each variant, the variants interleaved so that
        a change in the machine's speed hits them alike."""
        best = {}
        for _ in range(args.repeats):
            for name, kwargs in variants.items():
                timed = timed_point(**kwargs)
                if name not in best or timed[0] < best[name][0]:
                    best[name] = timed
        return best

    scored_roles = perturbed_roles(metrics)
    best = fastest({"ours": dict(scored_roles=scored_roles), "full": dict(scored_roles=scored_roles, full_logits=True)})
    wall, counter, row = best["ours"]

    d_model, d_ff = model.config.hidden_size, model.config.intermediate_size
    rows = mix.batch_size * 48  # a scoring batch's tokens (about 48 per sequence), the MLP's first matmul
    square = dense_matmul_flops(1024, 1024, 1024)
    shaped = dense_matmul_flops(rows, d_model, d_ff)
    flops = 2 * n_params * (counter.scored + counter.generated)
    achieved = flops / wall
    print(f"model: {n_params / 1e6:.2f}M parameters (d_model {d_model}, d_ff {d_ff}); batch {mix.batch_size}, "
          f"{mix.max_new_tokens} new tokens; metrics {', '.join(metrics)}; "
          f"{sum(map(len, roles.values()))} items in {len(ROLES)} roles; "
          f"torch threads {torch.get_num_threads()}")
    print(f"one point: {wall:.2f} s  (decoder passes: scoring {counter.seconds['scored']:.2f} s, "
          f"decoding {counter.seconds['generated']:.2f} s; the rest: the LM head and the arithmetic on its "
          "logits (log-softmax, argmax), ROUGE, tokenization, statistics)")
    print(f"tokens: {counter.scored} scored + {counter.generated} generated; "
          f"FLOPs = 2 x {n_params / 1e6:.2f}M x tokens = {flops / 1e9:.2f} GFLOP")
    print(f"achieved {achieved / 1e9:.2f} GFLOP/s")
    for name, rate in (("dense 1024^3 matmul", square), (f"dense [{rows}x{d_model}]@[{d_model}x{d_ff}]", shaped)):
        print(f"  vs {name}: {rate / 1e9:.2f} GFLOP/s -> ratio {achieved / rate:.3f} "
              f"(the point takes {rate / achieved:.1f}x its FLOP-bound time)")
    decoder_params = sum(p.numel() for p in model.get_decoder().parameters())
    scored_rate = 2 * decoder_params * counter.scored / max(counter.seconds["scored"], 1e-9)
    decode_rate = 2 * decoder_params * counter.generated / max(counter.seconds["generated"], 1e-9)
    print(f"  decoder scoring passes alone: {scored_rate / 1e9:.2f} GFLOP/s ({scored_rate / shaped:.3f} of the shaped "
          f"matmul); decoding steps alone: {decode_rate / 1e9:.2f} GFLOP/s ({decode_rate / shaped:.3f})")
    full_wall, _, full_row = best["full"]
    differ = max(abs(row[k] - full_row[k]) for k in row)
    print(f"LM head on real answer positions only, in chunks: {wall:.2f} s vs the model's full logits "
          f"(padding included) {full_wall:.2f} s -> {full_wall / wall:.2f}x faster; "
          f"largest difference of any metric {differ:.1e}")
    if scored_roles != set(ROLES):
        baseline = fastest({"all": dict(scored_roles=None)})["all"][0]
        print(f"the same point scoring every role's paraphrased and perturbed answers too (no metric of "
              f"{', '.join(metrics)} reads those of {', '.join(sorted(set(ROLES) - scored_roles))}): "
              f"{baseline:.2f} s -> answers alone {baseline / wall:.2f}x faster")

if __name__ == "__main__":
    main()
