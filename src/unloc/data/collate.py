"""Prompts and batches: turning QA records into token tensors.

One prompt convention for every model: a tokenizer with a chat template (instruct
models) gets ``[system?, user: question]`` + the generation prompt; the tiny models,
which have none, get ``"Question: {q}\\nAnswer:"``. The answer tokens are the answer plus
a trailing EOS; only they carry labels (TOFU's fine-tuning convention).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

IGNORE = -100
PLAIN_PROMPT = "Question: {question}\nAnswer:"


def prompt_text(tokenizer, question: str, system_prompt: str | None = None) -> str:
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": question}]
        if system_prompt is not None:
            messages.insert(0, {"role": "system", "content": system_prompt})
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return PLAIN_PROMPT.format(question=question)


@functools.lru_cache(maxsize=1 << 17)
def _token_ids(tokenizer, text: str) -> tuple[int, ...]:
    """``text``'s token ids, memoised per tokenizer object: a mixing sweep scores the same prompts
    and answers at every α point (the cache holds the tokenizer, so its identity is never reused)."""
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])


def prompt_ids(tokenizer, question: str, system_prompt: str | None = None) -> list[int]:
    ids = list(_token_ids(tokenizer, prompt_text(tokenizer, question, system_prompt)))
    if not getattr(tokenizer, "chat_template", None) and tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id] + ids
    return ids


def answer_ids(tokenizer, answer: str) -> list[int]:
    """Answer tokens without EOS. Plain prompts end in ':' so the answer starts with a space."""
    text = answer if getattr(tokenizer, "chat_template", None) else " " + answer
    return list(_token_ids(tokenizer, text))


def template_answer_ids(tokenizer, question: str, answer: str, system_prompt: str | None = None) -> list[int]:
    """open-unlearning's answer labels: the tokens of the whole chat (prompt and assistant turn)
    after the prompt's, that is the answer and the template's end of turn (SmolLM2:
    ``<|im_end|>``, ``\n``), then EOS unless the chat already ends in it. Without a chat
    template, the answer and EOS (``answer_ids``)."""
    eos = tokenizer.eos_token_id
    if not getattr(tokenizer, "chat_template", None):
        return answer_ids(tokenizer, answer) + [eos]
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    if system_prompt is not None:
        messages.insert(0, {"role": "system", "content": system_prompt})
    chat = list(_token_ids(tokenizer, tokenizer.apply_chat_template(messages, tokenize=False)))
    tail = chat[len(prompt_ids(tokenizer, question, system_prompt)):]
    return tail if chat[-1] == eos else tail + [eos]


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE on prompt tokens
    answer_len: int  # answer tokens without the EOS (what ES scores)


def encode_qa(tokenizer, question: str, answer: str, max_length: int, system_prompt=None) -> Encoded:
    prompt = prompt_ids(tokenizer, question, system_prompt)
    ans = answer_ids(tokenizer, answer)
    room = max_length - len(prompt) - 1
    if room < 1:
        raise ValueError(f"prompt of {len(prompt)} tokens leaves no room for the answer in max_length {max_length}")
    ans = ans[:room]
    answer = ans + [tokenizer.eos_token_id]
    return Encoded(prompt + answer, [IGNORE] * len(prompt) + answer, len(ans))


def encode_text(tokenizer, text: str, max_length: int) -> Encoded:
    """A pretraining document: BOS + text + EOS, every token predicted."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][: max_length - 2]
    ids = [tokenizer.bos_token_id] + ids + [tokenizer.eos_token_id]
    return Encoded(ids, [IGNORE] + ids[1:], len(ids) - 2)


def collate(examples: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch for teacher-forced passes."""
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        input_ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        attention[i, :n] = 1
    answer_len = torch.tensor([e.answer_len for e in examples])
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention, "answer_len": answer_len}


def encode_records(tokenizer, records, max_length: int, system_prompt=None) -> list[Encoded]:
    return [encode_qa(tokenizer, r["question"], r["answer"], max_length, system_prompt) for r in records]
