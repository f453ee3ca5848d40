"""WME's set-level gradients (the ``gradients`` stage and its file): the mean gradient of the
summed answer NLL and the empirical Fisher, checked against direct autograd computations, their
independence of the batch size, the seeded per-set sample, and the file format."""

import pytest
import torch
import torch.nn.functional as F

from tinyworld import build_tiny_world
from unloc import io, stages
from unloc.checkpoints import load_checkpoint
from unloc.data import load_role
from unloc.data.collate import IGNORE, collate, encode_records
from unloc.registry import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

GRADIENTS = {"precision": "fp32", "max_length": 96, "system_prompt": None, "batch_size": 2}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_tiny_world(tmp_path_factory.mktemp("gradients"), "theta")


def run(built, out, **params):
    path = out / "gradients.safetensors"
    stages.gradients({**GRADIENTS, **params}, built / "theta", built / "data", path)
    return io.load_gradients(path)


def encoded(built, role, indices=None):
    model, tokenizer = load_checkpoint(built / "theta")
    records = load_role(built / "data", role)
    if indices is not None:
        records = [records[i] for i in indices]
    return model, tokenizer, encode_records(tokenizer, records, GRADIENTS["max_length"])


def summed_answer_nll(model, examples, pad_id) -> torch.Tensor:
    """Σ over the examples of the NLL of their answer tokens, from the logits of one padded batch."""
    batch = collate(examples, pad_id)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), batch["labels"][:, 1:], ignore_index=IGNORE,
                           reduction="sum")


def direct_mean_gradient(built, role, indices=None) -> dict[str, torch.Tensor]:
    model, tokenizer, examples = encoded(built, role, indices)
    names, params = zip(*model.named_parameters())
    loss = summed_answer_nll(model, examples, tokenizer.pad_token_id) / len(examples)
    return dict(zip(names, torch.autograd.grad(loss, params)))


def assert_all_close(actual: dict, expected: dict, **tolerance):
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], msg=name, **tolerance)


def test_mean_gradient_is_the_gradient_of_the_mean_summed_answer_nll(built, tmp_path):
    gradients, metadata = run(built, tmp_path, sample_fraction=1.0, seed=7)
    model = load_checkpoint(built / "theta")[0]
    # the tiny Llama ties its LM head to the embedding: one tensor, under the embedding's name
    assert model.config.tie_word_embeddings
    assert set(gradients["forget"]) == {name for name, _ in model.named_parameters()}
    assert "lm_head.weight" not in gradients["forget"]
    for role in stages.GRADIENT_SETS:
        assert_all_close(gradients[role], direct_mean_gradient(built, role), rtol=1e-4, atol=1e-7)
        assert all(g.dtype == torch.float32 for g in gradients[role].values())
    n_forget, n_retain = (len(load_role(built / "data", role)) for role in stages.GRADIENT_SETS)
    assert (metadata["forget_examples"], metadata["retain_examples"]) == (str(n_forget), str(n_retain))
    assert (metadata["statistic"], metadata["stage"], metadata["format"]) == (
        "mean_gradient", "gradients", io.GRADIENTS_FORMAT)
    assert metadata["model"] == str(built / "theta")


def test_batch_size_changes_only_float_rounding(built, tmp_path):
    n_retain = len(load_role(built / "data", "retain"))
    by_size = {size: run(built, tmp_path / str(size), batch_size=size)[0] for size in (1, 3, n_retain)}
    for size in (1, 3):
        for role in stages.GRADIENT_SETS:
            expected = by_size[n_retain][role]
            actual = by_size[size][role]
            assert actual.keys() == expected.keys()
            assert relative_difference([actual[n] for n in expected], expected.values()) <= 1e-6, (size, role)
            # a tensor of small gradients (the keys', under near-uniform attention) rounds more, relative to its size
            for name in expected:
                assert relative_difference([actual[name]], [expected[name]]) <= 2e-5, (size, role, name)


def relative_difference(actual, expected) -> float:
    """‖a − b‖ / ‖b‖ over all the tensors together."""
    a, b = (torch.cat([t.flatten() for t in tensors]) for tensors in (actual, expected))
    return float((a - b).norm() / b.norm())


def test_empirical_fisher_is_the_mean_of_squared_per_example_gradients(built, tmp_path):
    fisher, metadata = run(built, tmp_path / "fisher", statistic="empirical_fisher")
    assert metadata["statistic"] == "empirical_fisher"
    model, tokenizer, examples = encoded(built, "forget")
    names, params = zip(*model.named_parameters())
    squares = [[g * g for g in torch.autograd.grad(summed_answer_nll(model, [e], tokenizer.pad_token_id), params)]
               for e in examples]
    expected = {name: sum(s[i] for s in squares) / len(examples) for i, name in enumerate(names)}
    assert_all_close(fisher["forget"], expected, rtol=1e-4, atol=1e-12)
    # not the squared mean gradient: E[g²] ≥ E[g]², strictly where the examples disagree
    mean = run(built, tmp_path / "mean")[0]["forget"]
    assert all((fisher["forget"][n] >= mean[n] ** 2 - 1e-9).all() for n in names)
    assert any(not torch.allclose(fisher["forget"][n], mean[n] ** 2) for n in names)


def documented_sample(sizes: list[int], fraction: float, seed: int) -> list[list[int]]:
    """The indices the help text says are drawn: floor(fraction x size), at least one, by one
    generator seeded with ``seed``, forget first, kept in dataset order."""
    generator = torch.Generator().manual_seed(seed)
    counts = [max(1, int(fraction * size)) for size in sizes]
    return [torch.randperm(size, generator=generator)[:count].sort().values.tolist()
            for size, count in zip(sizes, counts)]


def test_sample_fraction_draws_a_seeded_share_of_each_set(built, tmp_path):
    sizes = [len(load_role(built / "data", role)) for role in stages.GRADIENT_SETS]
    assert sizes[0] % 2 == 0 and sizes[1] % 2 == 0  # halves are whole: 0.5 takes exactly half
    half, metadata = run(built, tmp_path / "a", sample_fraction=0.5, seed=3)
    assert (int(metadata["forget_examples"]), int(metadata["retain_examples"])) == (sizes[0] // 2, sizes[1] // 2)
    for role, indices in zip(stages.GRADIENT_SETS, documented_sample(sizes, 0.5, 3)):
        assert_all_close(half[role], direct_mean_gradient(built, role, indices), rtol=1e-4, atol=1e-7)
    again = run(built, tmp_path / "b", sample_fraction=0.5, seed=3)[0]
    other = run(built, tmp_path / "c", sample_fraction=0.5, seed=4)[0]
    for role in stages.GRADIENT_SETS:
        assert_all_close(again[role], half[role], rtol=0, atol=0)
    assert any(not torch.equal(other["retain"][n], half["retain"][n]) for n in half["retain"])


def test_a_tiny_fraction_still_takes_one_example_of_each_set(built, tmp_path):
    metadata = run(built, tmp_path, sample_fraction=0.01)[1]
    assert (metadata["forget_examples"], metadata["retain_examples"]) == ("1", "1")


def test_the_sample_count_is_the_floor_of_the_fraction_as_written():
    records = [{"i": i} for i in range(100)]
    # 0.29 * 100 is 28.999... in binary floating point; the count is that of the decimal 0.29
    assert len(stages._sample_records(records, 0.29, torch.Generator().manual_seed(0), "t")) == 29
    assert len(stages._sample_records(records[:7], 0.5, torch.Generator().manual_seed(0), "t")) == 3
    with pytest.raises(io.ArtifactError, match="t: no examples"):
        stages._sample_records([], 0.5, torch.Generator(), "t")


@pytest.mark.parametrize("fraction", [0, -0.5, 1.5])
def test_sample_fraction_outside_zero_to_one_is_refused(fraction):
    with pytest.raises(ConfigError, match="sample_fraction"):
        stages.read_params(stages.STAGES["gradients"], {**GRADIENTS, "sample_fraction": fraction})


def test_the_model_is_left_as_it_was(built, tmp_path):
    before = (io.weights_sha256(built / "theta"), io.artifact_hash(built / "theta"))
    run(built, tmp_path, statistic="empirical_fisher", sample_fraction=0.1)
    # artifact_hash reads the hash unloc.json records; weights_sha256 hashes the weight files themselves
    assert (io.weights_sha256(built / "theta"), io.artifact_hash(built / "theta")) == before
    model, tokenizer, examples = encoded(built, "forget")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for statistic in ("mean_gradient", "empirical_fisher"):
        stages.gradient_statistic(model, examples, tokenizer.pad_token_id, statistic, 2)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


# --------------------------------------------------------------------------- the file


def some_gradients() -> dict[str, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    shapes = {"model.embed_tokens.weight": (5, 3), "model.norm.weight": (3,)}
    return {role: {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}
            for role in stages.GRADIENT_SETS}


def test_save_load_round_trip_is_exact(tmp_path):
    path = tmp_path / "g.safetensors"
    saved = some_gradients()
    io.save_gradients(path, saved, {"statistic": "mean_gradient", "forget_examples": 4})
    loaded, metadata = io.load_gradients(path)
    assert loaded.keys() == saved.keys()
    for role in saved:
        assert_all_close(loaded[role], saved[role], rtol=0, atol=0)
    assert metadata == {"statistic": "mean_gradient", "forget_examples": "4", "format": io.GRADIENTS_FORMAT}
    first = io.file_sha256(path)
    io.save_gradients(path, saved, {"statistic": "mean_gradient", "forget_examples": 4})
    assert io.file_sha256(path) == first  # canonical bytes: the same content, the same file


def test_another_format_is_refused_naming_the_expected_one(tmp_path):
    mask = tmp_path / "mask.safetensors"
    io.save_mask(mask, {0: torch.ones(4, dtype=torch.bool)}, "columns", {})
    delta_like = tmp_path / "delta.safetensors"
    io.write_safetensors(delta_like, {"forget/w": torch.ones(2)}, {"format": "delta", "statistic": "mean_gradient"})
    for path in (mask, delta_like):
        with pytest.raises(io.ArtifactError, match=f"expected a '{io.GRADIENTS_FORMAT}' artifact"):
            io.load_gradients(path)


def test_a_truncated_file_is_refused(tmp_path):
    path = tmp_path / "g.safetensors"
    io.save_gradients(path, some_gradients(), {"statistic": "mean_gradient"})
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(io.ArtifactError, match="corrupt or truncated"):
        io.load_gradients(path)


def test_inconsistent_gradients_are_refused(tmp_path):
    path = tmp_path / "g.safetensors"
    uneven = some_gradients()
    del uneven["retain"]["model.norm.weight"]
    with pytest.raises(ValueError, match="differ in parameters or shapes"):
        io.save_gradients(path, uneven, {"statistic": "mean_gradient"})
    with pytest.raises(ValueError, match="statistic"):
        io.save_gradients(path, some_gradients(), {})
    io.write_safetensors(path, {"forget/w": torch.ones(2, dtype=torch.float64)},
                         {"format": io.GRADIENTS_FORMAT, "statistic": "mean_gradient"})
    with pytest.raises(io.ArtifactError, match="float32"):
        io.load_gradients(path)
