"""Batched greedy generation (left padding, KV cache) equals generating each question alone."""

import pytest
import torch

from unloc.data.collate import prompt_ids
from unloc.metrics.generation import (
    decode_until_eos,
    eos_token_ids,
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


@pytest.fixture(scope="module")
def model(tokenizer):
    return make_tiny_model(seed=1, vocab=len(tokenizer))


def test_prompts_really_differ_in_length(tokenizer):
    lengths = {len(prompt_ids(tokenizer, q)) for q in QUESTIONS}
    assert len(lengths) >= 4


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_batched_equals_one_at_a_time(model, tokenizer, batch_size):
    alone = generate_one_at_a_time(model, tokenizer, QUESTIONS, MAX_NEW)
    batched = greedy_generate(model, tokenizer, QUESTIONS, MAX_NEW, batch_size=batch_size)
    assert batched == alone
    assert len(set(alone)) > 1  # the model is not degenerate: different prompts, different answers


def test_output_is_cut_at_first_eos(model, tokenizer):
    """Make the model emit EOS wherever it would emit the 4th token of question 0's answer:
    the EOS row of the output layer becomes that token's row, slightly scaled up."""
    eos = tokenizer.eos_token_id
    ids = torch.tensor([prompt_ids(tokenizer, QUESTIONS[0])])
    raw = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)[0, ids.shape[1]:].tolist()
    assert eos not in raw
    eos_model = make_tiny_model(seed=1, vocab=len(tokenizer))
    with torch.no_grad():
        eos_model.lm_head.weight[eos] = 1.01 * eos_model.lm_head.weight[raw[3]]
    alone = generate_one_at_a_time(eos_model, tokenizer, QUESTIONS, MAX_NEW)
    batched = greedy_generate(eos_model, tokenizer, QUESTIONS, MAX_NEW, batch_size=5)
    assert batched == alone
    assert alone[0] == tokenizer.decode(raw[:3], skip_special_tokens=True).strip()
    full = generate_one_at_a_time(model, tokenizer, QUESTIONS, MAX_NEW)
    assert sum(a != f for a, f in zip(alone, full)) >= 1


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
