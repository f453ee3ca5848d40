"""Tiny random Llama models and batches for unit tests (no training, no files)."""

import math
from types import SimpleNamespace

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


class GoldProbability(torch.nn.Module):
    """Puts probability ``p(row)`` on the next input token (``eos_p`` when it is EOS).

    ``generate`` continues each (left-padded) prompt with ``generations[prompt]``, or EOS.
    """

    def __init__(self, vocab: int, eos_id: int, p_of_row=lambda row: 1.0 / 2, eos_p: float | None = None,
                 generations: dict | None = None):
        super().__init__()
        self.vocab, self.eos_id, self.p_of_row, self.eos_p = vocab, eos_id, p_of_row, eos_p
        self.generations = generations or {}

    def generate(self, input_ids, attention_mask, max_new_tokens, pad_token_id, **kwargs):
        rows = [self.generations.get(tuple(ids[mask.bool()].tolist()), [self.eos_id])[:max_new_tokens]
                for ids, mask in zip(input_ids, attention_mask)]
        new = torch.full((len(rows), max(map(len, rows))), pad_token_id)
        for i, row in enumerate(rows):
            new[i, :len(row)] = torch.tensor(row)
        return torch.cat([input_ids, new], dim=1)

    def forward(self, input_ids, attention_mask):
        logits = torch.zeros(*input_ids.shape, self.vocab, dtype=torch.float64)
        for b in range(input_ids.shape[0]):
            row = tuple(input_ids[b][attention_mask[b].bool()].tolist())
            for t in range(input_ids.shape[1] - 1):
                gold = int(input_ids[b, t + 1])
                p = self.eos_p if gold == self.eos_id and self.eos_p is not None else self.p_of_row(row)
                logits[b, t] = math.log((1 - p) / (self.vocab - 1))
                logits[b, t, gold] = math.log(p)
        return SimpleNamespace(logits=logits)
