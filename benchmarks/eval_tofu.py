"""`unloc eval` on SmolLM2-135M-Instruct: wall time, tokens scored and generated, achieved FLOP/s
and its ratio to a dense fp32 matmul's FLOP/s measured in the same run, and peak memory.

The default is issue 19's setting: θp on TOFU forget01 with the full utility splits (400
retain_perturbed, 100 real-author and 117 world-fact items), 200 new tokens, 2 threads, every
metric of the suite. open-unlearning's evaluation of the same took 1746 s on a machine of
this kind (recorded in the issue, not measured here); the issue's target is a third of it.

    python benchmarks/eval_tofu.py [--model DIR] [--tofu ../shared/data/tofu] [--utility-items 20]
                                   [--compat open_unlearning --system-prompt "You are a helpful assistant."]

FLOPs are counted as in benchmarks/mix_point.py: 2 x parameters per position the decoder
processes (padding included, as the matmuls do); attention's own FLOPs are left out.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from unloc.evaluation import load_model, load_roles, score, summary_table
from unloc.metrics.suite import available, summary
from unloc.metrics.tofu import CONVENTIONS, TofuEvalConfig

sys.path.insert(0, str(Path(__file__).parent))
from eval_throughput import convert_theta_p  # noqa: E402
from mix_point import TokenCounter, dense_matmul_flops  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OPEN_UNLEARNING_SECONDS = 1746  # recorded in issue 19 for this setting, on 2 CPU cores
TARGET_SECONDS = 580


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="a model directory or delta (default: θp converted from the GGUF "
                                                 "file into a temporary directory)")
    p.add_argument("--tofu", default=str(REPO.parent / "shared" / "data" / "tofu"), help="TOFU folder")
    p.add_argument("--forget-split", default="forget01")
    p.add_argument("--utility-items", type=int, default=None, help="N items of each utility split (default: all)")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compat", default="unloc", choices=sorted(CONVENTIONS))
    p.add_argument("--system-prompt", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model
        if model_path is None:
            model_path = Path(tmp) / "theta_p"
            print(f"θp converted from the GGUF file in {convert_theta_p(model_path):.1f} s")
        model, tokenizer = load_model(str(model_path), "cpu")
    roles = load_roles(args.tofu, args.forget_split, None, args.utility_items)
    cfg = TofuEvalConfig(max_length=512, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                         system_prompt=args.system_prompt, conventions=CONVENTIONS[args.compat])
    names = available(roles)
    counter = TokenCounter(model.get_decoder())
    start = time.perf_counter()
    results = score(model, tokenizer, roles, cfg, names, progress=False)
    wall = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux

    n_params = sum(p.numel() for p in model.parameters())
    flops = 2 * n_params * (counter.scored + counter.generated)
    d_model, d_ff = model.config.hidden_size, model.config.intermediate_size
    square = dense_matmul_flops(1024, 1024, 1024)
    shaped = dense_matmul_flops(args.batch_size * 48, d_model, d_ff)
    sizes = ", ".join(f"{role} {len(records)}" for role, records in roles.items())
    print(f"SmolLM2 eval: {len(names)} metrics on {sizes}; {args.max_new_tokens} new tokens, batch "
          f"{args.batch_size}, {torch.get_num_threads()} threads, compat {args.compat}")
    print(f"wall {wall:.1f} s (decoder scoring passes {counter.seconds['scored']:.1f} s, decoding steps "
          f"{counter.seconds['generated']:.1f} s); peak memory {peak_gib:.2f} GiB")
    print(f"tokens: {counter.scored} scored + {counter.generated} generated; "
          f"FLOPs = 2 x {n_params / 1e6:.1f}M x tokens = {flops / 1e12:.2f} TFLOP")
    achieved = flops / wall
    print(f"achieved {achieved / 1e9:.2f} GFLOP/s")
    for name, rate in (("dense 1024^3 matmul", square),
                       (f"dense [{args.batch_size * 48}x{d_model}]@[{d_model}x{d_ff}]", shaped)):
        print(f"  vs {name}: {rate / 1e9:.2f} GFLOP/s -> ratio {achieved / rate:.3f}")
    print(f"vs the target {TARGET_SECONDS} s: {wall / TARGET_SECONDS:.2f}x; vs open-unlearning's recorded "
          f"{OPEN_UNLEARNING_SECONDS} s: {OPEN_UNLEARNING_SECONDS / wall:.2f}x faster")
    print(summary_table(summary(results)))


if __name__ == "__main__":
    main()
