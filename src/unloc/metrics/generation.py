"""Greedy generation for ROUGE: continuously batched, equal to one question at a time.

Prompts come from ``collate.prompt_ids`` so generation sees exactly the prompt that the
teacher-forced metrics score. Prompts are left-padded (every prompt ends at the same column,
so the first new token of every row is predicted from its last prompt token) and decoded
with the KV cache, position ids counting attended tokens only, so padding shifts no position.

Answers end at very different lengths (on TOFU a few stop after 20 tokens while two in five
run to the 200-token limit), so a row that has ended leaves the batch at once and, when a
quarter of the batch is free, waiting prompts are prefilled and join it: every decoding step
runs on rows still generating. A joining group is left-padded (keys, values and mask) to the
running width, and columns no row attends to any more are cut off the left; a masked key adds
exactly zero to attention, so a row's tokens are those it would get alone (up to float
rounding in sums of different widths, as with any batching). The output keeps the input order.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel
from transformers.cache_utils import DynamicLayer

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


def _prompt_batch(prompts: list[list[int]], pad_id: int, mask_pad_tokens: bool,
                  device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``left_pad``'s ids and attention mask on ``device``; ``mask_pad_tokens``: no pad-id token
    inside a prompt is attended to either (``greedy_generate``)."""
    input_ids, attention = left_pad(prompts, pad_id)
    if mask_pad_tokens:
        attention = attention * (input_ids != pad_id)
    return input_ids.to(device), attention.to(device)


@torch.no_grad()
def _generate_ids(model, input_ids, attention, max_new_tokens: int, pad_id: int, eos_ids: list[int]):
    """New tokens only, one list per row (rows that stopped early are padded; we cut at EOS)."""
    out = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=max_new_tokens,
                         do_sample=False, use_cache=True, pad_token_id=pad_id, eos_token_id=eos_ids)
    return out[:, input_ids.shape[1]:].tolist()


def greedy_generate(model, tokenizer, questions: list[str], max_new_tokens: int, batch_size: int = 32,
                    system_prompt: str | None = None, device: str = "cpu", mask_pad_tokens: bool = False) -> list[str]:
    """Greedy answers to ``questions``, at most ``batch_size`` decoded at once; equal to
    ``generate_one_at_a_time``.

    ``mask_pad_tokens``: attend to no pad-id token of the prompt, as open-unlearning does (with
    pad = EOS, no end-of-turn token; ``generate`` then also leaves them out of the position ids).
    Hugging Face models decode continuously batched (``continuous_greedy``); anything else (the
    stand-ins of the definition tests) with ``generate_in_batches``.
    """
    if not isinstance(model, PreTrainedModel):
        return generate_in_batches(model, tokenizer, questions, max_new_tokens, batch_size, system_prompt, device,
                                   mask_pad_tokens)
    prompts = [prompt_ids(tokenizer, q, system_prompt) for q in questions]
    pad_id, eos_ids = pad_token_id(tokenizer), eos_token_ids(model, tokenizer)
    new = continuous_greedy(model, prompts, max_new_tokens, pad_id, eos_ids, batch_size, mask_pad_tokens, device)
    return [decode_until_eos(tokenizer, ids, eos_ids) for ids in new]


def generate_in_batches(model, tokenizer, questions: list[str], max_new_tokens: int, batch_size: int = 32,
                        system_prompt: str | None = None, device: str = "cpu",
                        mask_pad_tokens: bool = False) -> list[str]:
    """The model's own ``generate`` on fixed batches of prompts of similar length, left-padded:
    every row of a batch runs until the batch's longest answer ends (continuous batching's
    baseline in benchmarks/eval_throughput.py)."""
    prompts = [prompt_ids(tokenizer, q, system_prompt) for q in questions]
    pad_id, eos_ids = pad_token_id(tokenizer), eos_token_ids(model, tokenizer)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    texts: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        input_ids, attention = _prompt_batch([prompts[i] for i in rows], pad_id, mask_pad_tokens, device)
        new = _generate_ids(model, input_ids, attention, max_new_tokens, pad_id, eos_ids)
        for i, ids in zip(rows, new):
            texts[i] = decode_until_eos(tokenizer, ids, eos_ids)
    return texts


def cache_input(model, cache) -> dict:
    """``cache`` as a forward keyword: ``cache`` from transformers 5 on (``past_key_values``,
    the name before, is deprecated there), ``past_key_values`` before."""
    return {_cache_keyword(type(model)): cache}


@functools.cache
def _cache_keyword(model_type: type) -> str:
    # once per model class: cache_input runs at every decoding step
    return "cache" if "cache" in inspect.signature(model_type.forward).parameters else "past_key_values"


def cache_output(out):
    """The KV cache a forward pass returned, under either name (``cache_input``)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


@dataclass
class _Running:
    """Rows decoded together: the prompt each row continues, the KV cache of every token fed so
    far, the attention mask over the cache's columns, and each row's next token (not yet fed)."""

    rows: list[int]
    cache: object
    attention: torch.Tensor
    next_ids: torch.Tensor


GROW = 64
"""Columns a ``SlotLayer`` gains when full: one copy of the cache per 64 decoding steps."""


class SlotLayer(DynamicLayer):
    """One layer's keys and values as views [rows, H, start:end, D] into buffers with room to
    grow. ``DynamicLayer`` copies the whole cache into a fresh tensor at every token (torch.cat)
    and at every finished row (an index copy): at batch 64 that, with the page faults of each
    new allocation, took two thirds of a decoding step. Here a token is written in place, a
    finished row is overwritten by the last live one, and cutting columns moves ``start``."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.device, self.is_initialized = keys.device, True
        self._fill(keys, values)

    def _fill(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        rows, heads, width, dim = keys.shape
        self.key_buffer = keys.new_empty(rows, heads, width + GROW, dim)
        self.value_buffer = values.new_empty(rows, heads, width + GROW, values.shape[-1])
        self.key_buffer[:, :, :width], self.value_buffer[:, :, :width] = keys, values
        self.rows, self.start, self.end = rows, 0, width
        self._view()

    def _view(self) -> None:
        self.keys = self.key_buffer[:self.rows, :, self.start:self.end]
        self.values = self.value_buffer[:self.rows, :, self.start:self.end]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        new = key_states.shape[-2]
        if self.end + new > self.key_buffer.shape[2]:
            self._fill(self.keys, self.values)
        self.key_buffer[:self.rows, :, self.end:self.end + new] = key_states
        self.value_buffer[:self.rows, :, self.end:self.end + new] = value_states
        self.end += new
        self._view()
        return self.keys, self.values

    def move_rows(self, to: list[int], source: list[int], rows: int) -> None:
        """Rows ``source`` overwrite rows ``to``; then only the first ``rows`` are live."""
        if to:
            live = slice(self.start, self.end)
            self.key_buffer[to, :, live] = self.key_buffer[source, :, live]
            self.value_buffer[to, :, live] = self.value_buffer[source, :, live]
        self.rows = rows
        self._view()

    def cut_left(self, columns: int) -> None:
        self.start += columns
        self._view()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._fill(self.keys[indices], self.values[indices])


def _slotted(cache) -> bool:
    return all(isinstance(layer, SlotLayer) for layer in getattr(cache, "layers", [None]))


def _prefill(model, prompts: list[list[int]], rows: list[int], pad_id: int, mask_pad_tokens: bool,
             device: str) -> _Running:
    input_ids, attention = _prompt_batch([prompts[i] for i in rows], pad_id, mask_pad_tokens, device)
    # as `generate` does: count attended tokens only (a masked position's id is never seen)
    position_ids = (attention.cumsum(-1) - 1).masked_fill(attention == 0, 0)
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids, use_cache=True,
                logits_to_keep=1)
    cache = cache_output(out)
    # plain key/value layers only: a sliding-window or quantized layer keeps its own cache
    if all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", [None])):
        cache.layers[:] = [SlotLayer(layer.keys, layer.values) for layer in cache.layers]
    return _Running(list(rows), cache, attention, out.logits[:, -1].argmax(-1))


def _step(model, run: _Running) -> None:
    """Feed every row its next token; the new next tokens come from the returned logits."""
    run.attention = torch.cat([run.attention, run.attention.new_ones(len(run.rows), 1)], 1)
    position_ids = run.attention.sum(-1, keepdim=True) - 1
    out = model(input_ids=run.next_ids[:, None], attention_mask=run.attention, position_ids=position_ids,
                **cache_input(model, run.cache), use_cache=True, logits_to_keep=1)
    run.cache, run.next_ids = cache_output(out), out.logits[:, -1].argmax(-1)


def _keep_rows(run: _Running, keep: list[int]) -> None:
    """Keep rows ``keep`` only (in a slot cache the last live rows move into the gaps), then cut
    the leading columns no kept row attends to."""
    if _slotted(run.cache):
        live, kept = len(keep), set(keep)
        gaps, movers = [j for j in range(live) if j not in kept], [j for j in keep if j >= live]
        for layer in run.cache.layers:
            layer.move_rows(gaps, movers, live)
        order = list(range(live))
        for gap, mover in zip(gaps, movers):
            order[gap] = mover
    else:
        order = keep
        run.cache.batch_select_indices(torch.tensor(keep, device=run.next_ids.device))
    index = torch.tensor(order, device=run.next_ids.device)
    run.attention, run.next_ids, run.rows = run.attention[index], run.next_ids[index], [run.rows[j] for j in order]
    lead = int((run.attention.sum(0) > 0).int().argmax())
    if lead and _slotted(run.cache):
        run.attention = run.attention[:, lead:]
        for layer in run.cache.layers:
            layer.cut_left(lead)


def _join(run: _Running, fresh: _Running) -> _Running:
    """One batch of both (slot caches), each left-padded (mask 0, keys and values 0) to the
    wider one's width."""
    width = max(run.attention.shape[1], fresh.attention.shape[1])

    def widen(t: torch.Tensor, dim: int) -> torch.Tensor:
        pad = [0, 0] * (t.dim() - 1 - dim) + [width - t.shape[dim], 0]
        return F.pad(t, pad)

    for mine, theirs in zip(run.cache.layers, fresh.cache.layers):
        mine._fill(torch.cat([widen(mine.keys, 2), widen(theirs.keys, 2)]),
                   torch.cat([widen(mine.values, 2), widen(theirs.values, 2)]))
    return _Running(run.rows + fresh.rows, run.cache, torch.cat([widen(run.attention, 1), widen(fresh.attention, 1)]),
                    torch.cat([run.next_ids, fresh.next_ids]))


@torch.no_grad()
def continuous_greedy(model, prompts: list[list[int]], max_new_tokens: int, pad_id: int, eos_ids: list[int],
                      batch_size: int = 32, mask_pad_tokens: bool = False, device: str = "cpu") -> list[list[int]]:
    """The greedy continuation of each prompt (up to and including its first EOS, at most
    ``max_new_tokens``), decoding at most ``batch_size`` rows at once (module docstring)."""
    new: list[list[int]] = [[] for _ in prompts]
    if max_new_tokens <= 0:
        return new
    # shortest prompts first: a group prefilled together then pads little
    queue = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    refill, eos, run = max(1, batch_size // 4), set(eos_ids), None
    while queue or run is not None:
        free = batch_size - (len(run.rows) if run else 0)
        if queue and (run is None or (free >= min(refill, len(queue)) and _slotted(run.cache))):
            fresh = _prefill(model, prompts, queue[:free], pad_id, mask_pad_tokens, device)
            queue = queue[free:]
            run = fresh if run is None else _join(run, fresh)
        keep = []
        for j, (row, token) in enumerate(zip(run.rows, run.next_ids.tolist())):
            new[row].append(token)
            if token not in eos and len(new[row]) < max_new_tokens:
                keep.append(j)
        if not keep:
            run = None
            continue
        if len(keep) < len(run.rows):
            _keep_rows(run, keep)
        _step(model, run)
    return new


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
