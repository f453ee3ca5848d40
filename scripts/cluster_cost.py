"""GPU-hours and disk of a Table 2 reproduction at 7-8B, from measured FLOPs per token.

FLOPs per token are counted, not assumed: the model is built on the meta device (no memory,
no compute) and ``torch.utils.flop_counter`` counts one forward and one forward + backward
pass of a ``--seq``-token sequence. Token counts come from a dataset directory in the
pipeline's layout (``results/data/<name>/*.jsonl``, e.g. after ``snakemake prepare_data
--configfile config/llama8b.yaml``) at ``--chars-per-token`` characters per token plus
``--template-tokens`` of chat template per prompt. Teacher-forced work is costed at
``--tflops`` sustained; greedy generation is bound by reading the weights once per decoding
step, costed at ``--hbm-tbps``. The result is an estimate to size requests, not a promise.

    python scripts/cluster_cost.py --data results/data/tofu --config config/llama8b.yaml
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import LlamaConfig, Olmo2Config

from unloc.config import check_config, load_config

ARCHITECTURES = {
    # the published configs of the paper's two models (hub config.json values)
    "llama8b": lambda: LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                   num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                                   tie_word_embeddings=False),
    "olmo7b": lambda: Olmo2Config(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                  num_attention_heads=32, num_key_value_heads=32, vocab_size=100352,
                                  tie_word_embeddings=False),
}


def flops_per_token(config, seq: int) -> tuple[float, float, int]:
    """(forward, forward + backward) FLOPs per token and the parameter count."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    ids = torch.zeros(1, seq, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids)
    forward = counter.get_total_flops() / seq
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids).logits.float().sum().backward()
    return forward, counter.get_total_flops() / seq, sum(p.numel() for p in model.parameters())


def read_role(data: Path, role: str) -> list[dict]:
    return [json.loads(line) for line in (data / f"{role}.jsonl").read_text().splitlines() if line.strip()]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="dataset directory (pipeline layout)")
    p.add_argument("--config", type=Path, default=Path("config/llama8b.yaml"))
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), default=None, help="default: the config's name")
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--chars-per-token", type=float, default=4.0)
    p.add_argument("--template-tokens", type=int, default=30)
    p.add_argument("--tflops", type=float, default=400.0, help="sustained bf16 TFLOP/s per GPU (H100: ~40%% MFU)")
    p.add_argument("--hbm-tbps", type=float, default=2.0, help="effective weight-read TB/s per GPU in decoding")
    args = p.parse_args()
    cfg = load_config(args.config)  # merged over config.yaml, as the workflow runs it
    experiment = check_config(cfg)
    arch = ARCHITECTURES[args.arch or cfg["name"]]()
    fwd, train, n_params = flops_per_token(arch, args.seq)
    print(f"{n_params / 1e9:.2f}B parameters: {fwd / 1e9:.1f} GFLOP/token forward "
          f"({fwd / n_params:.2f} N), {train / 1e9:.1f} GFLOP/token forward+backward ({train / n_params:.2f} N)")

    def tokens(text: str) -> float:
        return len(text) / args.chars_per_token

    def qa_tokens(records, answer_keys=("answer",)) -> float:
        return sum(args.template_tokens + tokens(r["question"]) + sum(tokens(r[k]) for k in answer_keys)
                   for r in records)

    data = {role: read_role(args.data, role) for role in
            ("forget", "retain", "forget_perturbed", "retain_perturbed", "real_authors_perturbed",
             "world_facts_perturbed")}
    seeds, objectives = len(cfg["masks"]["seeds"]), len(experiment.unlearn_objectives)
    runs = seeds * objectives * len(experiment.unlearn_localizers)
    alphas = experiment.mix.alphas
    gpu_s = lambda flops: flops / (args.tflops * 1e12)  # noqa: E731

    finetune = experiment.train["finetune_retain"].epochs * qa_tokens(data["retain"]) * train
    inject = experiment.inject.epochs * (qa_tokens(data["forget"]) * 3) * train  # forget + a retain batch beside it
    # forget + retain batches, plus a reference forward for NPO/DPO (counted for every objective)
    unlearn = experiment.unlearn_train.epochs * qa_tokens(data["forget"]) * 2 * (train + fwd)

    def perturbed_tokens(records, keys):
        return sum(args.template_tokens + tokens(r["question"]) + sum(tokens(r[k]) for k in keys)
                   + sum(tokens(a) for a in r["perturbed_answer"]) for r in records)

    scored = (perturbed_tokens(data["forget_perturbed"], ("answer", "paraphrased_answer"))
              + perturbed_tokens(data["retain_perturbed"], ("answer", "paraphrased_answer"))
              + perturbed_tokens(data["real_authors_perturbed"], ("answer",))
              + perturbed_tokens(data["world_facts_perturbed"], ("answer",)))
    if experiment.mix.rs_items == "all":
        scored += qa_tokens(data["retain"])
    questions = sum(len(data[r]) for r in ("retain_perturbed", "real_authors_perturbed", "world_facts_perturbed"))
    steps = math.ceil(questions / experiment.mix.batch_size) * experiment.mix.max_new_tokens
    weight_bytes = 2 * n_params  # bf16
    point = gpu_s(scored * fwd) + steps * weight_bytes / (args.hbm_tbps * 1e12)
    rows = [("finetune θr (FSDP)", gpu_s(finetune), 1),
            ("inject θo, per seed", gpu_s(inject), seeds),
            ("unlearn, per run", gpu_s(unlearn), runs),
            (f"mix_eval, per sweep of {alphas} α", alphas * point, runs)]
    print(f"\n{'stage':32s} {'GPU-h each':>10s} {'jobs':>5s} {'GPU-h total':>11s}")
    for name, seconds, count in rows:
        print(f"{name:32s} {seconds / 3600:10.3f} {count:5d} {seconds * count / 3600:11.2f}")
    total = sum(s * c for _, s, c in rows)
    print(f"{'Table 2 (compute only)':32s} {'':10s} {'':5s} {total / 3600:11.2f}")

    full = 2 * n_params  # a bf16 checkpoint (precision: bf16)
    d_ff, layers = arch.intermediate_size, arch.num_hidden_layers
    column = arch.hidden_size * 4  # one value vector in fp32: deltas are fp32 whatever the precision
    delta = cfg["masks"]["ratio"] * d_ff * layers * column
    print(f"\ndisk: a full bf16 checkpoint {full / 1e9:.1f} GB; a {cfg['masks']['ratio']:.0%} value-vector delta "
          f"{delta / 1e6:.0f} MB ({cfg['masks']['ratio']:.0%} x {d_ff} x {layers} columns x {arch.hidden_size} "
          "x 4 B, fp32)")
    checkpoints = 2 + seeds + runs  # θp, θr, θo per seed, θu per run
    print(f"{checkpoints} checkpoints (θp, θr, {seeds} θo, {runs} θu): {checkpoints * full / 1e9:.0f} GB as full "
          f"checkpoints, {(2 * full + (seeds + runs) * delta) / 1e9:.1f} GB with sparse deltas")


if __name__ == "__main__":
    main()
