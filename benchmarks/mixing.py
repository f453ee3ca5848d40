"""Sparse model mixing vs full state-dict interpolation, over one α sweep.

θ(α) = (1 - α) θo + α θu. ``DeltaMixer`` rewrites only the masked value vectors of θo in place
(θu - θo is zero elsewhere); the baseline interpolates every tensor of two full state dicts and
loads the result. Both produce the same weights (checked); prints the time per switch of each and
their ratio, measured in this run.

    python benchmarks/mixing.py [--hidden 512 --ff 2048 --layers 8 --alphas 21]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from unloc.io import Delta
from unloc.localizers import oracle_mask
from unloc.mixing import DeltaMixer, alpha_grid, interpolate_state_dicts
from unloc.models import down_proj, entry_delta, gather_entries


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--ff", type=int, default=2048)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--ratio", type=float, default=0.1)
    p.add_argument("--alphas", type=int, default=21)
    args = p.parse_args()

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.ff,
                      num_hidden_layers=args.layers, num_attention_heads=8, num_key_value_heads=8)
    theta_o = LlamaForCausalLM(cfg).eval()
    indices = oracle_mask(args.layers, args.ff, args.ratio, seed=7).indices()
    theta_u = copy.deepcopy(theta_o)
    before = gather_entries(theta_o, "columns", indices)
    with torch.no_grad():
        for layer, idx in indices.items():
            down_proj(theta_u, layer).weight[:, idx] += 0.01 * torch.randn(args.hidden, len(idx))
    delta = Delta(entry_delta(theta_u, before, "columns", indices), parent=None)
    state_o, state_u = theta_o.state_dict(), theta_u.state_dict()
    state_o = {k: v.clone() for k, v in state_o.items()}
    alphas = alpha_grid(args.alphas)

    full_model = copy.deepcopy(theta_o)
    start = time.perf_counter()
    for a in alphas:
        full_model.load_state_dict(interpolate_state_dicts(state_o, state_u, a))
    t_full = (time.perf_counter() - start) / len(alphas)

    sparse_model = copy.deepcopy(theta_o)
    mixer = DeltaMixer(sparse_model, delta)
    start = time.perf_counter()
    for a in alphas:
        mixer.set_alpha(a)
    t_sparse = (time.perf_counter() - start) / len(alphas)

    same = all(torch.allclose(a, b, atol=1e-6, rtol=0)
               for a, b in zip(full_model.state_dict().values(), sparse_model.state_dict().values()))
    n = sum(p.numel() for p in theta_o.parameters())
    print(f"model: {n / 1e6:.1f}M parameters; delta: {sum(len(i) for i in indices.values())} value vectors "
          f"({args.ratio:.0%}); {len(alphas)} α points; torch threads {torch.get_num_threads()}")
    print(f"full state-dict interpolation: {t_full * 1e3:9.2f} ms per α")
    print(f"sparse column rewrite:         {t_sparse * 1e3:9.2f} ms per α")
    print(f"speed-up (full / sparse): {t_full / t_sparse:.1f}x; final weights equal: {same}")


if __name__ == "__main__":
    main()
