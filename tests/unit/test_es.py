"""Extraction Strength: teacher-forced ES equals the generation-based definition."""

from types import SimpleNamespace

import pytest
import torch

from unloc.data.collate import IGNORE, Encoded, collate
from unloc.metrics.es import extraction_strength, extraction_strength_by_generation, per_example_es

from tinymodels import make_tiny_model

EOS = 2


def encoded(prompt, answer):
    return Encoded(prompt + answer + [EOS], [IGNORE] * len(prompt) + answer + [EOS], len(answer))


class Oracle(torch.nn.Module):
    """Predicts ``script[t]`` as the token after position t, whatever the input."""

    def __init__(self, script, vocab=16):
        super().__init__()
        self.script, self.vocab = script, vocab

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        for t in range(input_ids.shape[1]):
            logits[:, t, self.script[t + 1] if t + 1 < len(self.script) else 0] = 1.0
        return SimpleNamespace(logits=logits)


@pytest.mark.parametrize("wrong,expected_paper,expected_ou", [
    ([], 1.0, 1.0),            # every answer token right
    ([4], 0.0, 0.25),          # only the last token wrong: k* = |y| (paper), capped at |y|-1
    ([1], 0.75, 0.75),         # first answer token wrong: k* = 1
    ([1, 3], 0.25, 0.25),      # the last wrong position decides
])
def test_es_on_known_cases(wrong, expected_paper, expected_ou):
    prompt, answer = [1, 5], [6, 7, 8, 9]  # |y| = 4; answer position j is sequence index 1 + j
    script = prompt + answer + [EOS]
    script = [t if i - 1 not in wrong else 15 for i, t in enumerate(script)]
    batch = collate([encoded(prompt, answer)], pad_id=0)
    model = Oracle(script)
    assert extraction_strength(model, batch, "paper").item() == pytest.approx(expected_paper)
    assert extraction_strength(model, batch, "open_unlearning").item() == pytest.approx(expected_ou)


def test_eos_is_not_scored():
    prompt, answer = [1, 5], [6, 7, 8, 9]
    script = prompt + answer + [11]  # model predicts something else instead of EOS
    batch = collate([encoded(prompt, answer)], pad_id=0)
    assert extraction_strength(Oracle(script), batch).item() == 1.0


def test_teacher_forced_es_equals_generation_from_every_prefix():
    """On a real (tiny, random) Llama: answers are its own greedy continuations with some
    positions corrupted, so ES takes many values between 0 and 1."""
    model = make_tiny_model(seed=3)
    g = torch.Generator().manual_seed(0)
    examples, expected = [], []
    for i in range(24):
        prompt = [1] + torch.randint(3, 64, (int(torch.randint(2, 6, (1,), generator=g)),), generator=g).tolist()
        n = int(torch.randint(3, 9, (1,), generator=g))
        ctx = torch.tensor([prompt])
        greedy = model.generate(ctx, attention_mask=torch.ones_like(ctx), max_new_tokens=n, min_new_tokens=n,
                                do_sample=False, pad_token_id=0)[0, len(prompt):].tolist()
        answer = list(greedy)
        for j in torch.randint(0, n, (i % 3,), generator=g).tolist():
            answer[j] = (answer[j] + 7) % 61 + 3
        examples.append(encoded(prompt, answer))
        expected.append(extraction_strength_by_generation(model, prompt, answer))
    got = per_example_es(model, examples, pad_id=0, batch_size=5)
    assert len(set(expected)) > 3, "the cases should cover several ES values"
    assert got.tolist() == pytest.approx(expected, abs=1e-6)
