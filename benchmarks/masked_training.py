"""Efficient masked training vs the naive full-parameter masked reference.

Both train the same tiny Llama on the same batches with AdamW restricted to a 10% value-vector
mask (DESIGN §5). The naive reference (``optim.NaiveMaskedOptimizer``) keeps every parameter in the
optimizer and zeroes the gradient outside the mask (then restores the entries weight decay
moved); the efficient form trains a gathered copy of the masked columns only. Prints per-step time and optimizer-state
bytes of each, and their ratios, all measured in this run.

    python benchmarks/masked_training.py [--hidden 256 --ff 1024 --layers 6 --steps 20]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from unloc.localizers import oracle_mask
from unloc.models import attach_masked, detach_masked
from unloc.optim import NaiveMaskedOptimizer, adamw
from unloc.scoring import answer_nll


def make_model(args):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.ff,
                      num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=args.seq)
    return LlamaForCausalLM(cfg)


def batch(args, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), generator=g)
    return {"input_ids": ids, "labels": ids, "attention_mask": torch.ones_like(ids)}


def state_bytes(opt) -> int:
    return sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if torch.is_tensor(t))


def naive_step_fn(model, mask):
    opt = NaiveMaskedOptimizer(model, mask, 1e-3, 0.01)

    def step(b):
        opt.zero_grad()
        answer_nll(model, b).backward()
        opt.step()

    return step, opt.optimizer


def efficient_step_fn(model, mask):
    opt = adamw(attach_masked(model, mask.granularity, mask.indices()), 1e-3, 0.01)

    def step(b):
        opt.zero_grad()
        answer_nll(model, b).backward()
        opt.step()

    return step, opt


def timed(step, args) -> float:
    for i in range(args.warmup):
        step(batch(args, i))
    start = time.perf_counter()
    for i in range(args.steps):
        step(batch(args, 1000 + i))
    return (time.perf_counter() - start) / args.steps


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--ff", type=int, default=1024)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--ratio", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()

    base = make_model(args)
    mask = oracle_mask(args.layers, args.ff, args.ratio, seed=7)
    naive_model, eff_model = copy.deepcopy(base).train(), copy.deepcopy(base).train()
    naive_step, naive_opt = naive_step_fn(naive_model, mask)
    eff_step, eff_opt = efficient_step_fn(eff_model, mask)
    t_naive, t_eff = timed(naive_step, args), timed(eff_step, args)
    b_naive, b_eff = state_bytes(naive_opt), state_bytes(eff_opt)
    detach_masked(eff_model)
    same = all(torch.equal(a, b) for a, b in zip(naive_model.state_dict().values(), eff_model.state_dict().values()))

    n_params = sum(p.numel() for p in base.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters, {args.layers} layers x {args.ff} value vectors, "
          f"mask {mask.count()} vectors ({args.ratio:.0%}), batch {args.batch} x {args.seq} tokens, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'':10s} {'s/step':>10s} {'optimizer state':>16s}")
    print(f"{'naive':10s} {t_naive:10.4f} {b_naive / 2**20:13.2f} MiB")
    print(f"{'efficient':10s} {t_eff:10.4f} {b_eff / 2**20:13.2f} MiB")
    print(f"speed-up (naive / efficient time): {t_naive / t_eff:.2f}x")
    print(f"optimizer-state ratio (naive / efficient bytes): {b_naive / b_eff:.1f}x")
    print(f"final weights identical: {same}")


if __name__ == "__main__":
    main()
