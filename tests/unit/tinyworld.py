"""A small generated TOFU world and a tiny Llama pretrained on it, for tests that run whole stages
(``stages.pretrain`` and what follows it) in seconds."""

from pathlib import Path

from unloc import stages
from unloc.data import build_dataset, write_dataset

TINY_WORLD = {"name": "t", "source": "minitofu", "forget_split": "forget10",
              "minitofu": {"seed": 0, "n_authors": 10, "qa_per_author": 4, "n_retain_perturbed": 6,
                           "n_real_authors": 4, "n_world_facts": 4, "corpus_docs": 20}}


def tiny_pretrain_params(num_layers: int = 3, epochs: int = 2) -> dict:
    """The pretrain stage's params for a tiny Llama on ``TINY_WORLD``."""
    arch = {"hidden_size": 32, "intermediate_size": 64, "num_layers": num_layers, "num_heads": 4, "vocab_size": 400}
    return {"precision": "fp32", "model": {"source": "tiny", "max_length": 64, "tiny": arch}, "seed": 0,
            "train": {"lr": 1e-2, "epochs": epochs, "batch_size": 8}}


def build_tiny_world(root: Path, model: str, num_layers: int = 3, epochs: int = 2) -> Path:
    """``root/data`` (TINY_WORLD) and ``root/<model>``, a tiny Llama pretrained on it; returns root."""
    write_dataset(build_dataset(TINY_WORLD), root / "data")
    stages.pretrain(tiny_pretrain_params(num_layers, epochs), root / "data", root / model, root / "pretrain.csv")
    return root
