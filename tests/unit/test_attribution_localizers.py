"""The attribution localizers of seeds/000 Section 3 (Activations, MemFlex, WAGLE per vector and
per weight), each against its definition, recomputed here by another route, and on models built
so that the right answer is known."""

import json

import pytest
import torch

from unloc import io, stages
from unloc.data.collate import IGNORE, collate
from unloc.localizers import LOCALIZERS, LocalizerInputs, localize
from unloc.localizers.activations import activation_scores
from unloc.localizers.attribution import set_gradient, standardize_per_layer, top_ratio_mask
from unloc.localizers.memflex import MemFlexSettings, memflex_mask, memflex_tests, perturbed_gradient, random_labels
from unloc.localizers.wagle import WagleSettings, diagonal_fisher_mean, wagle_scores, wagle_weight_scores
from unloc.masks import load_mask, n_selected
from unloc.registry import ConfigError
from unloc.scoring import answer_nll

from tinymodels import make_tiny_model, random_examples

SCORING = [spec.name for spec in LOCALIZERS.specs() if spec.reads_weights]


def inputs_for(model, forget, retain) -> LocalizerInputs:
    return LocalizerInputs(model_config=model.config.to_dict(), model=model, pad_id=0,
                           sets={"forget": forget, "retain": retain})


def mlp(model, layer):
    return model.model.layers[layer].mlp


# --------------------------------------------------------------------------- shared machinery


def test_top_ratio_selects_over_all_layers_with_ties_to_the_first_entry():
    scores = {0: torch.tensor([0.0, 5.0, 1.0, 1.0]), 1: torch.tensor([4.0, 1.0, 3.0, 0.0])}
    mask = top_ratio_mask(scores, 0.5, "columns")  # 4 of 8: 5, 4, 3 and the first of the 1.0s
    assert mask.layers[0].tolist() == [False, True, True, False]
    assert mask.layers[1].tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="NaN"):
        top_ratio_mask({0: torch.tensor([float("nan"), 1.0])}, 0.5, "columns")


def test_per_layer_standardization_makes_a_layer_s_scale_irrelevant():
    a = {0: torch.tensor([1.0, 2.0, 3.0, 10.0]), 1: torch.tensor([1.0, 4.0, 2.0, 3.0])}
    scaled = {0: a[0] * 1000, 1: a[1]}
    assert all(torch.allclose(standardize_per_layer(a)[k], standardize_per_layer(scaled)[k]) for k in a)
    assert not top_ratio_mask(scaled, 0.25, "columns").layers[1].any()  # raw: layer 0 takes all
    chosen = top_ratio_mask(standardize_per_layer(scaled), 0.25, "columns")
    assert chosen.layers[0].tolist() == [False, False, False, True]
    assert chosen.layers[1].tolist() == [False, True, False, False]
    assert torch.equal(standardize_per_layer({0: torch.ones(3)})[0], torch.zeros(3))


def test_set_gradient_is_the_gradient_of_one_loss_over_the_whole_set_and_leaves_the_model_as_it_was():
    model, examples = make_tiny_model(seed=1), random_examples(10, seed=2)
    model.model.embed_tokens.weight.requires_grad_(False)  # a flag the computation must restore
    grads = set_gradient(model, examples, 0, batch_size=3, device="cpu")
    model.zero_grad(set_to_none=True)
    answer_nll(model, collate(examples, 0)).backward()  # every example in one batch
    for layer, g in grads.items():
        assert torch.allclose(g, mlp(model, layer).down_proj.weight.grad, atol=1e-7, rtol=1e-5)
    assert not model.model.embed_tokens.weight.requires_grad and mlp(model, 0).up_proj.weight.requires_grad


# --------------------------------------------------------------------------- Activations


def test_activation_scores_are_mean_coefficient_magnitude_over_answer_positions_times_vector_norm():
    """Recomputed from the MLP's input: h = act(gate(x)) * up(x), at the positions predicting answer tokens."""
    model, examples = make_tiny_model(seed=3), random_examples(6, seed=4)
    got = activation_scores(model, examples, 0, batch_size=4)
    captured = {}
    hooks = [mlp(model, layer).register_forward_pre_hook(lambda m, a, layer=layer: captured.__setitem__(layer, a[0]))
             for layer in range(2)]
    want = {layer: torch.zeros(64, dtype=torch.float64) for layer in range(2)}
    with torch.no_grad():
        for e in examples:
            batch = collate([e], 0)
            model(input_ids=batch["input_ids"])
            predicting = [t - 1 for t, label in enumerate(e.labels) if label != IGNORE]
            for layer in range(2):
                block = mlp(model, layer)
                x = captured[layer][0, predicting]
                h = block.act_fn(block.gate_proj(x)) * block.up_proj(x)
                want[layer] += h.abs().mean(0).double() / len(examples)
    for hook in hooks:
        hook.remove()
    for layer in range(2):
        norms = mlp(model, layer).down_proj.weight.norm(dim=0)
        assert torch.allclose(got[layer], (want[layer].float() * norms), rtol=1e-5, atol=1e-8)


def test_activations_finds_the_value_vector_whose_coefficient_was_made_dominant():
    model, examples = make_tiny_model(seed=5), random_examples(8, seed=6)
    with torch.no_grad():
        mlp(model, 1).up_proj.weight[37] *= 40  # h_37 of layer 1 is 40x larger at every position
    spec = LOCALIZERS["activations"]
    result = localize("activations", spec.parse({}, "masks.activations"), inputs_for(model, examples, []), 1 / 128, 7)
    assert result.mask.count() == 1 and bool(result.mask.layers[1][37])
    assert set(result.details) == {"raw_scores"}


# --------------------------------------------------------------------------- MemFlex


def test_random_labels_replace_the_answer_tokens_only_and_are_seeded():
    batch = collate(random_examples(4, seed=7), 0)
    a = random_labels(64, seed=7, role=0, draw=0)(batch, 0)
    answer = batch["labels"] != IGNORE
    assert torch.equal(a[~answer], batch["labels"][~answer]) and not torch.equal(a[answer], batch["labels"][answer])
    assert torch.equal(a, random_labels(64, seed=7, role=0, draw=0)(batch, 0))
    assert not torch.equal(a, random_labels(64, seed=7, role=0, draw=1)(batch, 0))
    assert not torch.equal(a, random_labels(64, seed=7, role=1, draw=0)(batch, 0))


def test_memflex_gradient_is_the_mean_over_draws_of_random_label_gradients():
    model, examples = make_tiny_model(seed=8), random_examples(6, seed=9)
    settings = MemFlexSettings(draws=3, batch_size=4)
    got = perturbed_gradient(model, examples, 0, settings, seed=11, role=0, device="cpu")
    draws = [set_gradient(model, examples, 0, 4, "cpu", random_labels(64, 11, 0, d)) for d in range(3)]
    for layer in got:
        assert torch.allclose(got[layer], sum(d[layer] for d in draws) / 3, atol=1e-9)


def test_memflex_mask_is_both_tests_or_the_ratio_by_quantile_and_never_padded():
    cos = {0: torch.tensor([0.1, 0.99, 0.5, -0.2]), 1: torch.tensor([0.3, 0.2, 0.97, 0.0])}
    norm = {0: torch.tensor([1.0, 9.0, 3.0, 0.5]), 1: torch.tensor([2.0, 0.1, 8.0, 0.0])}
    fixed = memflex_mask(cos, norm, MemFlexSettings(mu=0.95, sigma=0.9), ratio=0.5)
    assert fixed.layers[0].tolist() == [True, False, True, False] and fixed.layers[1].tolist() == [True] + [False] * 3
    # sigma by quantile: the 2 largest norms among the vectors with cos < 0.95 (not 9.0 or 8.0: cos too high)
    quantile = memflex_mask(cos, norm, MemFlexSettings(mu=0.95), ratio=0.25)
    assert quantile.layers[0].tolist() == [False, False, True, False]
    assert quantile.layers[1].tolist() == [True, False, False, False]
    # 5 vectors pass the cosine test with a non-zero gradient; 4 of 8 wanted: the 4 largest of them
    half = memflex_mask(cos, norm, MemFlexSettings(mu=0.95), ratio=0.5)
    assert half.count() == 4 and not half.layers[1][1]  # the one left out has the smallest norm, 0.1
    # 6 of 8 wanted, still only those 5: a smaller mask, not one filled up with vectors that fail
    assert memflex_mask(cos, norm, MemFlexSettings(mu=0.95), ratio=0.75).count() == 5


def test_memflex_never_selects_a_value_vector_that_no_input_activates():
    """h_i = 0 everywhere (its gate and up rows zeroed): its gradient is 0, so it fails ||g|| > sigma."""
    model = make_tiny_model(seed=12)
    with torch.no_grad():
        for layer in range(2):
            mlp(model, layer).up_proj.weight[:32] = 0  # half of every layer silent
    inputs = inputs_for(model, random_examples(8, seed=13), random_examples(8, seed=14))
    settings = MemFlexSettings(draws=2)
    result = localize("memflex", settings, inputs, 0.25, 7)
    for layer in range(2):
        assert not result.mask.layers[layer][:32].any()
        assert torch.equal(result.details["grad_norm"][layer][:32], torch.zeros(32))
    cos, norm = result.details["cos"], result.details["grad_norm"]
    want = {layer: (cos[layer] < 0.95) & (norm[layer] > 0) for layer in cos}
    assert result.mask.count() == min(n_selected(128, 0.25), sum(int(w.sum()) for w in want.values()))
    assert all(not (result.mask.layers[layer] & ~want[layer]).any() for layer in cos)


def test_memflex_cosines_are_those_of_the_value_vectors_gradients():
    g_unl = {0: torch.tensor([[1.0, 0.0], [0.0, 2.0]])}  # columns (value vectors) [1, 0] and [0, 2]
    g_ret = {0: torch.tensor([[1.0, 1.0], [1.0, 0.0]])}  # columns [1, 1] and [1, 0]
    cos, norm = memflex_tests(g_unl, g_ret)
    assert torch.allclose(cos[0], torch.tensor([2 ** -0.5, 0.0])) and torch.allclose(norm[0], torch.tensor([1.0, 2.0]))
    silent, _ = memflex_tests({0: torch.zeros(2, 1)}, {0: torch.ones(2, 1)})  # a zero gradient: cos 0, not NaN
    assert torch.equal(silent[0], torch.zeros(1))


# --------------------------------------------------------------------------- WAGLE


def test_wagle_weight_score_is_theta_g_f_minus_g_r_g_f_over_gamma():
    theta, g_f, g_r = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([3.0, 1.0, -4.0]), torch.tensor([2.0, 4.0, 1.0])
    assert torch.allclose(wagle_weight_scores(theta, g_f, g_r, gamma=2.0), torch.tensor([0.0, -4.0, 0.0]))
    assert torch.allclose(wagle_weight_scores(theta, g_f, g_r, gamma=4.0), torch.tensor([1.5, -3.0, -1.0]))


def test_wagle_gamma_is_the_mean_squared_per_example_gradient_over_the_down_projections():
    model, examples = make_tiny_model(seed=15), random_examples(5, seed=16)
    total, n = 0.0, 0
    for e in examples:
        model.zero_grad(set_to_none=True)
        answer_nll(model, collate([e], 0)).backward()
        weights = [mlp(model, layer).down_proj.weight for layer in range(2)]
        total += sum(float(w.grad.double().pow(2).sum()) for w in weights)
        n = sum(w.numel() for w in weights)
    assert diagonal_fisher_mean(model, examples, 0, "cpu") == pytest.approx(total / (len(examples) * n), rel=1e-9)


def test_wagle_scores_follow_the_formula_from_independent_gradients():
    model, forget, retain = make_tiny_model(seed=17), random_examples(6, seed=18), random_examples(8, seed=19)
    settings = WagleSettings(batch_size=5, hessian_items=4)
    scores, gamma = wagle_scores(model, forget, retain, 0, settings)

    def full_gradients(examples):
        model.zero_grad(set_to_none=True)
        answer_nll(model, collate(examples, 0)).backward()
        return [mlp(model, layer).down_proj.weight.grad.clone() for layer in range(2)]

    g_f, g_r = full_gradients(forget), full_gradients(retain)
    assert gamma == pytest.approx(diagonal_fisher_mean(model, [retain[0], retain[2], retain[4], retain[6]], 0, "cpu"))
    for layer in range(2):
        theta = mlp(model, layer).down_proj.weight.detach()
        assert torch.allclose(scores[layer], theta * g_f[layer] - g_r[layer] * g_f[layer] / gamma, atol=1e-9, rtol=1e-4)


def test_wagle_takes_gamma_as_a_value_when_given():
    model, forget, retain = make_tiny_model(seed=23), random_examples(4, seed=24), random_examples(4, seed=25)
    estimated, gamma = wagle_scores(model, forget, retain, 0, WagleSettings())
    given, used = wagle_scores(model, forget, retain, 0, WagleSettings(gamma=2 * gamma))
    assert used == 2 * gamma
    # S(γ) = θ g_f − g_r g_f / γ, so S(2γ) − S(γ) = g_r g_f / (2γ): doubling γ halves the retention term alone
    g_f, g_r = (set_gradient(model, examples, 0, 16, "cpu") for examples in (forget, retain))
    for layer in range(2):
        assert torch.allclose(given[layer] - estimated[layer], g_r[layer] * g_f[layer] / (2 * gamma), rtol=1e-3,
                              atol=1e-6 * float(given[layer].abs().max()))


def test_wagle_scores_a_silent_value_vector_zero_and_per_vector_is_the_mean_of_its_weights():
    model = make_tiny_model(seed=20)
    with torch.no_grad():
        mlp(model, 0).up_proj.weight[5] = 0  # h_5 of layer 0 is 0: no gradient reaches column 5
    inputs = inputs_for(model, random_examples(6, seed=21), random_examples(6, seed=22))
    settings = WagleSettings(hessian_items=4)
    per_vector = localize("wagle", settings, inputs, 0.1, 7)
    per_weight = localize("wagle_weights", settings, inputs, 0.8, 7)
    assert per_vector.scores[0][5] == 0 and torch.equal(per_weight.scores[0][:, 5], torch.zeros(32))
    for layer in range(2):
        assert torch.allclose(per_vector.scores[layer], per_weight.scores[layer].mean(0))
    assert per_weight.mask.granularity == "elements" and per_weight.mask.count() == n_selected(2 * 32 * 64, 0.8)
    assert per_vector.mask.count() == n_selected(128, 0.1) and float(per_vector.mask.metadata["gamma"]) > 0


# --------------------------------------------------------------------------- the localize stage


@pytest.fixture
def model_and_data(tmp_path):
    """A saved tiny model with a real tokenizer, and a dataset directory of forget/retain QA."""
    from unloc.checkpoints import save_checkpoint
    from unloc.models import build_tiny_llama, train_tokenizer

    from tinymodels import SENTENCES

    tokenizer = train_tokenizer(SENTENCES * 4, 120)
    model = build_tiny_llama({"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 4,
                              "vocab_size": 120, "max_length": 48}, tokenizer, seed=0)
    save_checkpoint(model, tokenizer, tmp_path / "theta_full", {"stage": "test"})
    data = tmp_path / "data"
    data.mkdir()
    qa = [{"question": s.split("\n")[0].removeprefix("Question: "), "answer": s.split("Answer: ")[1]}
          for s in SENTENCES]
    for role, records in (("forget", qa[:2]), ("retain", qa[2:])):
        (data / f"{role}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return tmp_path / "theta_full", data


@pytest.mark.parametrize("name", SCORING)
def test_localize_stage_scores_a_saved_model_and_writes_mask_and_scores(name, model_and_data, tmp_path):
    model, data = model_and_data
    params = {"localizer": name, "settings": {}, "ratio": 0.25, "seed": 7, "max_length": 48}
    out, scores = tmp_path / "mask.safetensors", tmp_path / "scores.safetensors"
    stages.localize(params, model, out, data=data, scores=scores)
    mask = load_mask(out)
    tensors, metadata = io.read_safetensors(scores)
    assert mask.metadata["method"] == name and metadata["source_hash"] == mask.metadata["source_hash"]
    assert mask.count() <= n_selected(mask.size(), 0.25)
    assert tensors["layers.1.down_proj.scores"].shape == mask.layers[1].shape
    stages.localize(params, model, tmp_path / "again.safetensors", data=data, scores=tmp_path / "again.scores")
    assert torch.equal(load_mask(tmp_path / "again.safetensors").flat(), mask.flat())  # deterministic


def test_localize_stage_refuses_a_scoring_localizer_without_data(model_and_data, tmp_path):
    model, _ = model_and_data
    params = {"localizer": "wagle", "settings": {}, "ratio": 0.1, "seed": 7}
    with pytest.raises(ConfigError, match="wagle scores forget and retain examples: give --data"):
        stages.localize(params, model, tmp_path / "m.safetensors", scores=tmp_path / "s.safetensors")
    with pytest.raises(ConfigError, match="masks.memflex.sigma: .*0"):
        stages.localize({**params, "localizer": "memflex", "settings": {"sigma": -1.0}}, model,
                        tmp_path / "m.safetensors", scores=tmp_path / "s.safetensors")
    assert not (tmp_path / "m.safetensors").exists()
