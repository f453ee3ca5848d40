"""Configs naming an HF model: `pretrain` resolves the checkpoint and prompts use its chat
template. Tested on a tiny local stand-in directory, never a download."""

import json

import pytest
import torch

from unloc import stages
from unloc.checkpoints import load_checkpoint
from unloc.data import build_dataset, write_dataset
from unloc.data.collate import encode_qa, prompt_text
from unloc.models import build_tiny_llama, train_tokenizer

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
DATA = {"name": "t", "source": "minitofu", "forget_split": "forget10",
        "minitofu": {"seed": 0, "n_authors": 10, "qa_per_author": 4, "n_retain_perturbed": 4,
                     "n_real_authors": 4, "n_world_facts": 4, "corpus_docs": 20}}


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """A tiny instruct-style model directory (chat template, no pad token) and a dataset."""
    root = tmp_path_factory.mktemp("hf")
    roles = build_dataset(DATA)
    write_dataset(roles, root / "data")
    texts = [d["text"] for d in roles["corpus"]] + [r["question"] + " " + r["answer"] for r in roles["full"]]
    tok = train_tokenizer(texts, vocab_size=400)
    tok.chat_template = CHAT_TEMPLATE
    model = build_tiny_llama({"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 4,
                              "vocab_size": 400, "max_length": 128}, tok, seed=0)
    model.save_pretrained(root / "org-model")
    tok.save_pretrained(root / "org-model")
    return root


def test_pretrain_resolves_a_local_hf_checkpoint(stand_in, tmp_path):
    params = {"model": {"source": "hf", "name_or_path": str(stand_in / "org-model")}, "version": 1}
    stages.pretrain(params, stand_in / "data", tmp_path / "theta_p", tmp_path / "log.csv")
    model, tok = load_checkpoint(tmp_path / "theta_p")
    original, _ = load_checkpoint(stand_in / "org-model")
    for a, b in zip(model.state_dict().values(), original.state_dict().values()):
        assert torch.equal(a, b)
    assert json.loads((tmp_path / "theta_p" / "unloc.json").read_text())["stage"] == "pretrain"


def test_prompts_use_the_chat_template(stand_in):
    _, tok = load_checkpoint(stand_in / "org-model")
    text = prompt_text(tok, "Who?", system_prompt="Be brief.")
    assert text == "<|system|>Be brief.</s><|user|>Who?</s><|assistant|>"
    enc = encode_qa(tok, "Who?", "Nobody.", max_length=64)
    answer = [t for t, label in zip(enc.input_ids, enc.labels) if label != -100]
    assert answer[-1] == tok.eos_token_id
    assert tok.decode(answer[:-1]) == "Nobody."


def test_finetune_and_inject_run_on_the_hf_stand_in(stand_in, tmp_path):
    ckpt = stand_in / "org-model"
    run = {"max_length": 96, "system_prompt": None, "seed": 0}
    stages.pretrain({"model": {"source": "hf", "name_or_path": str(ckpt)}}, stand_in / "data",
                    tmp_path / "theta_p", tmp_path / "p.csv")
    stages.finetune({**run, "train": {"lr": 1e-3, "epochs": 1, "batch_size": 8}}, tmp_path / "theta_p",
                    stand_in / "data", "retain", tmp_path / "theta_r", tmp_path / "r.csv")
    stages.localize({"localizer": "oracle", "settings": {}, "ratio": 0.1, "seed": 7}, tmp_path / "theta_p",
                    tmp_path / "t.safetensors")
    stages.inject_forget({**run, "train": {"lr": 1e-2, "epochs": 1, "batch_size": 4, "lambda_retain": 2.0}},
                         tmp_path / "theta_r", tmp_path / "t.safetensors", stand_in / "data",
                         tmp_path / "o" / "delta.safetensors", tmp_path / "o.csv")
    theta_o, _ = load_checkpoint(tmp_path / "o" / "delta.safetensors")
    theta_r, _ = load_checkpoint(tmp_path / "theta_r")
    changed = [k for k, v in theta_o.state_dict().items() if not torch.equal(v, theta_r.state_dict()[k])]
    assert changed and all(k.endswith("mlp.down_proj.weight") for k in changed)
