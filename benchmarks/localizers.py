"""What the attribution localizers cost, in units measured in the same run.

The baseline is one pass of the naive way to get a set-level gradient: backward through every
parameter of the model over the forget set, then read the down projections' gradients. Printed:

* the set-level gradient with gradients for the down projections alone (what the localizers
  do), against that baseline, after checking both give the same gradient;
* each registered attribution localizer's wall time on forget and retain sets of the given sizes,
  as a multiple of the baseline (MemFlex takes `draws` gradients per set, WAGLE two set-level
  gradients plus one per-example gradient per Hessian item).

    python benchmarks/localizers.py [--hidden 256 --ff 1024 --layers 6 --forget 64 --retain 256 --repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from unloc.data.collate import IGNORE, Encoded
from unloc.localizers import LOCALIZERS, LocalizerInputs, localize
from unloc.localizers.attribution import batches, scored_tokens, set_gradient
from unloc.models import down_proj
from unloc.scoring import batch_token_logprobs


def make_model(args):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.ff,
                      num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=args.seq)
    return LlamaForCausalLM(cfg).eval()


def examples(n: int, args, seed: int) -> list[Encoded]:
    """QA-shaped random examples: a third of each sequence is prompt, the rest answer."""
    g = torch.Generator().manual_seed(seed)
    prompt = args.seq // 3
    out = []
    for _ in range(n):
        ids = torch.randint(3, args.vocab, (args.seq,), generator=g).tolist()
        out.append(Encoded(ids, [IGNORE] * prompt + ids[prompt:], args.seq - prompt - 1))
    return out


def full_backward_gradient(model, data, batch_size) -> dict[int, torch.Tensor]:
    """The baseline: every parameter gets its gradient; the down projections' are read off."""
    model.zero_grad(set_to_none=True)
    total = scored_tokens(data)
    for batch in batches(data, 0, batch_size, "cpu"):
        logp, _ = batch_token_logprobs(model, batch)
        (-logp.sum() / total).backward()
    grads = {layer: down_proj(model, layer).weight.grad.clone() for layer in range(len(model.model.layers))}
    model.zero_grad(set_to_none=True)
    return grads


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--ff", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--seq", type=int, default=48)
    ap.add_argument("--forget", type=int, default=64, help="forget examples")
    ap.add_argument("--retain", type=int, default=256, help="retain examples")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = make_model(args)
    forget, retain = examples(args.forget, args, 1), examples(args.retain, args, 2)
    naive = full_backward_gradient(model, forget, args.batch)
    ours = set_gradient(model, forget, 0, args.batch, "cpu")
    worst = max(float((naive[k] - ours[k]).abs().max() / naive[k].abs().max().clamp(min=1e-30)) for k in naive)
    assert worst < 1e-5, f"down_proj-only gradients differ from the full backward's (relative {worst:.2e})"

    baseline = best_of(args.repeats, lambda: full_backward_gradient(model, forget, args.batch))
    only_down = best_of(args.repeats, lambda: set_gradient(model, forget, 0, args.batch, "cpu"))
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"model: {args.layers} layers, d_model {args.hidden}, d_ff {args.ff} ({params:.1f}M parameters); "
          f"forget {args.forget}, retain {args.retain} examples of {args.seq} tokens; {args.threads} thread(s)")
    print(f"baseline: full-parameter backward over the forget set      {baseline:8.3f} s  (1.00x)")
    print(f"set_gradient, down projections only (same gradient, {worst:.1e}) {only_down:8.3f} s  "
          f"({only_down / baseline:.2f}x of the baseline, {baseline / only_down:.2f}x faster)")

    inputs = LocalizerInputs(model_config=model.config.to_dict(), model=model, pad_id=0,
                             sets={"forget": forget, "retain": retain})
    for spec in LOCALIZERS.specs():
        if not spec.reads_weights:
            continue
        settings = spec.parse({}, f"masks.{spec.name}")
        seconds = best_of(args.repeats, lambda spec=spec, settings=settings: localize(spec.name, settings, inputs,
                                                                                        0.1, 7))
        print(f"localizer {spec.name:<14} {seconds:8.3f} s  ({seconds / baseline:6.2f}x the baseline)  {settings}")


if __name__ == "__main__":
    main()
