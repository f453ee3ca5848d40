"""Greedy generation for ROUGE: batched with left padding, equal to one question at a time.

Prompts come from ``collate.prompt_ids`` so generation sees exactly the prompt that the
teacher-forced metrics score. A batch is left-padded (every prompt ends at the same
column, so the first new token of every row is predicted from its last prompt token) and
decoded with the KV cache; ``generate`` derives position ids from the attention mask, so
padding shifts no position. Questions are sorted by prompt length before batching to keep
padding small; the output keeps the input order.
"""

from __future__ import annotations

import torch

from unloc.data.collate import prompt_ids


def pad_token_id(tokenizer) -> int:
    """The pad id for batches; tokenizers without one (some instruct models) pad with EOS."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every id that ends an answer: the tokenizer's EOS and the model's generation EOS
    (instruct models end a turn with a token, e.g. ``<|eot_id|>``, that is not the tokenizer's EOS)."""
    ids = {tokenizer.eos_token_id}
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if config_eos is not None:
        ids.update(config_eos if isinstance(config_eos, (list, tuple)) else [config_eos])
    return sorted(i for i in ids if i is not None)


def decode_until_eos(tokenizer, new_ids: list[int], eos_ids: list[int]) -> str:
    """Text of the generated tokens before the first EOS, without special tokens, stripped."""
    cut = next((i for i, t in enumerate(new_ids) if t in eos_ids), len(new_ids))
    return tokenizer.decode(new_ids[:cut], skip_special_tokens=True).strip()


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids and attention mask with every prompt right-aligned."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        input_ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        attention[i, width - len(p):] = 1
    return input_ids, attention


@torch.no_grad()
def _generate_ids(model, input_ids, attention, max_new_tokens: int, pad_id: int, eos_ids: list[int]):
    """New tokens only, one list per row (rows that stopped early are padded; we cut at EOS)."""
    out = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=max_new_tokens,
                         do_sample=False, use_cache=True, pad_token_id=pad_id, eos_token_id=eos_ids)
    return out[:, input_ids.shape[1]:].tolist()


def greedy_generate(model, tokenizer, questions: list[str], max_new_tokens: int, batch_size: int = 32,
                    system_prompt: str | None = None, device: str = "cpu", mask_pad_tokens: bool = False) -> list[str]:
    """Greedy answers to ``questions``, batched; equal to ``generate_one_at_a_time``.

    ``mask_pad_tokens``: attend to no pad-id token of the prompt, as open-unlearning does (with
    pad = EOS, no end-of-turn token; ``generate`` then also leaves them out of the position ids).
    """
    prompts = [prompt_ids(tokenizer, q, system_prompt) for q in questions]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    pad_id, eos_ids = pad_token_id(tokenizer), eos_token_ids(model, tokenizer)
    texts: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        input_ids, attention = left_pad([prompts[i] for i in rows], pad_id)
        if mask_pad_tokens:
            attention = attention * (input_ids != pad_id)
        new = _generate_ids(model, input_ids.to(device), attention.to(device), max_new_tokens, pad_id, eos_ids)
        for i, ids in zip(rows, new):
            texts[i] = decode_until_eos(tokenizer, ids, eos_ids)
    return texts


def generate_one_at_a_time(model, tokenizer, questions: list[str], max_new_tokens: int,
                           system_prompt: str | None = None, device: str = "cpu") -> list[str]:
    """The unbatched reference: no padding at all (for tests and the batching benchmark)."""
    pad_id, eos_ids = pad_token_id(tokenizer), eos_token_ids(model, tokenizer)
    texts = []
    for q in questions:
        ids = torch.tensor([prompt_ids(tokenizer, q, system_prompt)], device=device)
        new = _generate_ids(model, ids, torch.ones_like(ids), max_new_tokens, pad_id, eos_ids)
        texts.append(decode_until_eos(tokenizer, new[0], eos_ids))
    return texts
