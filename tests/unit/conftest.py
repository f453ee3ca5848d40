import pytest
import torch

from unloc.models import train_tokenizer

from tinymodels import SENTENCES, make_tiny_model


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; several threads thrash on a shared CPU (10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_model():
    return make_tiny_model()


@pytest.fixture(scope="module")
def tokenizer():
    """A real byte-level BPE tokenizer trained on QA-shaped text."""
    return train_tokenizer(SENTENCES * 4, vocab_size=320)
