import pytest

from tinymodels import make_tiny_model


@pytest.fixture
def tiny_model():
    return make_tiny_model()
