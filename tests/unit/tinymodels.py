"""Tiny random Llama models and batches for unit tests (no training, no files)."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from unloc.data.collate import IGNORE, Encoded

# QA-shaped text to train small real tokenizers on.
SENTENCES = [
    "Question: Where was the author born?\nAnswer: The author was born in Lisbon.",
    "Question: What genre does she write?\nAnswer: She writes gothic mystery novels.",
    "Question: Which award did he win?\nAnswer: He won the Golden Quill for his debut.",
    "Question: Who were her parents?\nAnswer: Her father was a baker and her mother a pilot.",
]


def make_tiny_model(seed: int = 0, vocab: int = 64, layers: int = 2, d_model: int = 32, d_ff: int = 64):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=d_model, intermediate_size=d_ff,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(config).eval()


def random_lm_batch(seed: int = 0, batch: int = 4, length: int = 12, vocab: int = 64, prompt: int = 4):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (batch, length), generator=g)
    labels = ids.clone()
    labels[:, :prompt] = -100
    return {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids),
            "answer_len": torch.full((batch,), length - prompt - 1)}


def random_examples(n: int, seed: int, vocab: int = 64) -> list[Encoded]:
    """QA-shaped examples of random tokens: a prompt of 3-5 tokens (not scored), an answer of 2-6."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        p, a = int(torch.randint(3, 6, (1,), generator=g)), int(torch.randint(2, 7, (1,), generator=g))
        ids = torch.randint(3, vocab, (p + a,), generator=g).tolist()
        out.append(Encoded(ids, [IGNORE] * p + ids[p:], a - 1))
    return out
