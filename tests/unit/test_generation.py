"""Continuously batched greedy generation (left padding, KV cache, rows leaving and joining)
equals generating each question alone with Hugging Face's ``generate``."""

import pytest
import torch

from unloc.data.collate import prompt_ids
from unloc.metrics import generation
from unloc.metrics.generation import (
    _generate_ids,
    continuous_greedy,
    decode_until_eos,
    eos_token_ids,
    generate_in_batches,
    generate_one_at_a_time,
    greedy_generate,
    left_pad,
)
from unloc.models import train_tokenizer

from tinymodels import SENTENCES, make_tiny_model

QUESTIONS = [  # prompt lengths differ, so the batch needs real left padding
    "Where?",
    "Where was the author born?",
    "Which award did the gothic mystery author win for her debut novel in Lisbon?",
    "Who were his parents?",
    "What genre?",
]
MAX_NEW = 12


def sharp_tiny_model(vocab: int):
    """A tiny random model whose attention is sharp enough that a wrong position id or a wrongly
    attended key changes its answers (at initialisation attention is near uniform)."""
    model = make_tiny_model(seed=1, vocab=vocab)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight *= 6
            layer.self_attn.k_proj.weight *= 6
    return model


@pytest.fixture(scope="module")
def model(tokenizer):
    return sharp_tiny_model(len(tokenizer))


def test_prompts_really_differ_in_length(tokenizer):
    lengths = {len(prompt_ids(tokenizer, q)) for q in QUESTIONS}
    assert len(lengths) >= 4


@pytest.mark.parametrize("batched_generate", [greedy_generate, generate_in_batches])
@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_batched_equals_one_at_a_time(model, tokenizer, batch_size, batched_generate):
    alone = generate_one_at_a_time(model, tokenizer, QUESTIONS, MAX_NEW)
    batched = batched_generate(model, tokenizer, QUESTIONS, MAX_NEW, batch_size=batch_size)
    assert batched == alone
    assert len(set(alone)) > 1  # the model is not degenerate: different prompts, different answers


@pytest.mark.parametrize("batch_size", [2, 5])
def test_output_is_cut_at_first_eos(model, tokenizer, batch_size):
    """Make the model emit EOS wherever it would emit the 4th token of question 0's answer:
    the EOS row of the output layer becomes that token's row, slightly scaled up."""
    eos = tokenizer.eos_token_id
    ids = torch.tensor([prompt_ids(tokenizer, QUESTIONS[0])])
    raw = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)[0, ids.shape[1]:].tolist()
    assert eos not in raw
    eos_model = sharp_tiny_model(len(tokenizer))
    with torch.no_grad():
        eos_model.lm_head.weight[eos] = 1.01 * eos_model.lm_head.weight[raw[3]]
    alone = generate_one_at_a_time(eos_model, tokenizer, QUESTIONS, MAX_NEW)
    batched = greedy_generate(eos_model, tokenizer, QUESTIONS, MAX_NEW, batch_size=batch_size)
    assert batched == alone
    assert alone[0] == tokenizer.decode(raw[:3], skip_special_tokens=True).strip()
    full = generate_one_at_a_time(model, tokenizer, QUESTIONS, MAX_NEW)
    assert sum(a != f for a, f in zip(alone, full)) >= 1


@pytest.mark.parametrize("grow", [generation.GROW, 2])
def test_rows_that_end_leave_and_waiting_prompts_join(model, tokenizer, monkeypatch, grow):
    """Many prompts through 3 slots, answers ending at different lengths: prompts join a running
    batch, and every answer is still the one it gets alone (``grow`` 2: the cache's buffers also
    fill up and are reallocated). EOS takes the place of the token whose first appearances in
    the plain model's answers are most spread out."""
    monkeypatch.setattr(generation, "GROW", grow)
    questions = [f"{q} {w}" for q in QUESTIONS for w in ("Lisbon", "born", "award")]
    prompts = [prompt_ids(tokenizer, q) for q in questions]
    raw = continuous_greedy(model, prompts, MAX_NEW, tokenizer.pad_token_id, [tokenizer.eos_token_id])
    first = {t: {row.index(t) for row in raw if t in row} for t in {t for row in raw for t in row}}
    stop = max(first, key=lambda t: len(first[t]))
    eos_model = sharp_tiny_model(len(tokenizer))
    with torch.no_grad():
        eos_model.lm_head.weight[tokenizer.eos_token_id] = 1.01 * eos_model.lm_head.weight[stop]
    joins = []
    monkeypatch.setattr(generation, "_join", lambda run, fresh, join=generation._join: joins.append(1)
                        or join(run, fresh))
    batched = greedy_generate(eos_model, tokenizer, questions, MAX_NEW, batch_size=3)
    assert batched == generate_one_at_a_time(eos_model, tokenizer, questions, MAX_NEW)
    assert len({len(a) for a in batched}) >= 3 and joins  # answers really end apart; prompts really joined


@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_masked_pad_tokens_inside_prompts_match_generate_on_the_whole_batch(model, batch_size):
    """open-unlearning's attention (no pad-id token attended, even inside a prompt): continuous
    batching gives what ``generate`` gives on the whole left-padded batch."""
    pad, eos = 0, 2
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(3, 64, (n,), generator=g).tolist() for n in (3, 7, 5, 9, 4)]
    for p in prompts[1:]:
        p[len(p) // 2] = pad  # an end-of-turn token that is also the pad id
    ids, real = left_pad(prompts, pad)
    whole = _generate_ids(model, ids, real * (ids != pad), MAX_NEW, pad, [eos])
    expected = [row[:row.index(eos) + 1] if eos in row else row for row in whole]
    assert continuous_greedy(model, prompts, MAX_NEW, pad, [eos], batch_size, mask_pad_tokens=True) == expected
    unmasked = continuous_greedy(model, prompts, MAX_NEW, pad, [eos], batch_size)
    assert unmasked != expected  # the masking changes answers, so the comparison above can fail


def test_chat_template_prompts_with_system_prompt(model, tokenizer):
    chat = train_tokenizer(SENTENCES * 4, vocab_size=320)
    chat.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                          "{% if add_generation_prompt %}assistant:{% endif %}")
    kwargs = dict(max_new_tokens=MAX_NEW, system_prompt="You are a helpful assistant.")
    assert (greedy_generate(model, chat, QUESTIONS, batch_size=5, **kwargs)
            == generate_one_at_a_time(model, chat, QUESTIONS, **kwargs))


def test_decode_until_eos(tokenizer):
    eos = tokenizer.eos_token_id
    words = tokenizer(" born in Lisbon", add_special_tokens=False)["input_ids"]
    assert decode_until_eos(tokenizer, words + [eos] + words, [eos]) == "born in Lisbon"
    assert decode_until_eos(tokenizer, [eos] + words, [eos]) == ""
    assert decode_until_eos(tokenizer, words, [eos]) == "born in Lisbon"


def test_eos_ids_include_the_models_generation_eos(model, tokenizer):
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, 7]
    try:
        assert eos_token_ids(model, tokenizer) == sorted({tokenizer.eos_token_id, 7})
    finally:
        model.generation_config.eos_token_id = tokenizer.eos_token_id


def test_left_pad_right_aligns_prompts():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
