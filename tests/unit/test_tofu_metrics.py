"""TOFU metrics against their definitions, on cases whose answer is known by construction.

``GoldProbability`` is a teacher-forced fake LM: it reads the next input token and gives it
a chosen probability p (spreading 1 - p evenly over the rest of the vocabulary), so every
answer's per-token loss is -log p by construction.
"""

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats

from unloc.data.collate import answer_ids, encode_qa, prompt_ids
from unloc.metrics.generation import greedy_generate
from unloc.metrics.tofu import (
    UTILITY_PARTS,
    TofuEvalConfig,
    answer_losses,
    answer_probability,
    forget_quality,
    forget_truth_ratios,
    log10_fq,
    model_utility,
    rouge_l_recall,
    truth_ratio_forget,
    truth_ratio_utility,
    truth_ratios,
    utility_parts,
)

from tinymodels import GoldProbability, make_tiny_model

MAX_LEN = 64
REL = 1e-5  # token_logprobs works in float32


@pytest.fixture(scope="module")
def llama(tokenizer):
    return make_tiny_model(seed=2, vocab=len(tokenizer))


def uniform_model(vocab):
    return lambda input_ids, attention_mask: SimpleNamespace(logits=torch.zeros(*input_ids.shape, vocab))


def row_key(tokenizer, question, answer):
    return tuple(encode_qa(tokenizer, question, answer, MAX_LEN).input_ids)


def by_answer(tokenizer, probs: dict[tuple[str, str], float]):
    """p_of_row that looks the row's (question, answer) up in ``probs``."""
    table = {row_key(tokenizer, q, a): p for (q, a), p in probs.items()}
    return lambda row: table[row]


def record(i, k=5):
    return {"question": f"Where was author {i} born?", "answer": f"The author was born in Lisbon {i}.",
            "paraphrased_answer": f"Lisbon {i} is where the author was born.",
            "perturbed_answer": [f"The author was born in Porto {i} {j}." for j in range(k)]}


# --------------------------------------------------------------------------- answer losses


def test_uniform_model_loss_is_log_vocab(tokenizer):
    pairs = [("Where?", "Lisbon."), ("Who were her parents?", "A baker and a pilot.")]
    losses = answer_losses(uniform_model(len(tokenizer)), tokenizer, pairs, MAX_LEN)
    assert losses.tolist() == pytest.approx([math.log(len(tokenizer))] * 2, rel=1e-6)


def test_eos_is_part_of_the_answer_loss(tokenizer):
    q, a = "Where was the author born?", "The author was born in Lisbon."
    n = len(answer_ids(tokenizer, a))
    right_on_eos = GoldProbability(len(tokenizer), tokenizer.eos_token_id, lambda row: 0.9, eos_p=0.9)
    wrong_on_eos = GoldProbability(len(tokenizer), tokenizer.eos_token_id, lambda row: 0.9, eos_p=0.01)
    good = answer_losses(right_on_eos, tokenizer, [(q, a)], MAX_LEN).item()
    bad = answer_losses(wrong_on_eos, tokenizer, [(q, a)], MAX_LEN).item()
    assert good == pytest.approx(-math.log(0.9), abs=1e-5)
    assert bad == pytest.approx((-n * math.log(0.9) - math.log(0.01)) / (n + 1), abs=1e-5)
    assert bad > good


def test_answer_loss_equals_definition_on_a_real_model(tokenizer, llama):
    """Mean NLL of answer + EOS, from one unpadded sequence, computed independently."""
    pairs = [("Where was the author born?", "The author was born in Lisbon."), ("What genre?", "Gothic.")]
    losses = answer_losses(llama, tokenizer, pairs, MAX_LEN, batch_size=2)
    for (q, a), loss in zip(pairs, losses):
        prompt, answer = prompt_ids(tokenizer, q), answer_ids(tokenizer, a) + [tokenizer.eos_token_id]
        ids = torch.tensor([prompt + answer])
        with torch.no_grad():
            logp = torch.log_softmax(llama(input_ids=ids).logits[0].double(), -1)
        nll = [-logp[len(prompt) - 1 + j, tok].item() for j, tok in enumerate(answer)]
        assert loss.item() == pytest.approx(sum(nll) / len(nll), abs=1e-5)


def test_answer_losses_do_not_depend_on_batch_size(tokenizer, llama):
    records = [record(i, 2) for i in range(4)]
    pairs = [(r["question"], a) for r in records for a in [r["answer"], *r["perturbed_answer"]]]
    pairs.append(("Who were the parents of the famous gothic mystery author born in Lisbon?", "A baker."))
    one = answer_losses(llama, tokenizer, pairs, MAX_LEN, batch_size=1)
    seven = answer_losses(llama, tokenizer, pairs, MAX_LEN, batch_size=7)
    assert torch.allclose(one, seven, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- truth ratio


def test_uniform_model_truth_ratio_is_one(tokenizer):
    records = [record(i) for i in range(3)]
    tr = truth_ratios(uniform_model(len(tokenizer)), tokenizer, records, "paraphrased_answer", MAX_LEN)
    assert tr.tolist() == pytest.approx([1.0] * 3, rel=1e-6)
    assert truth_ratio_forget(tr) == pytest.approx(1.0)
    assert truth_ratio_utility(tr) == pytest.approx(0.0, abs=1e-6)


def test_truth_ratio_is_geometric_mean_of_perturbed_over_correct(tokenizer):
    """Correct answer at q = 0.5; perturbed at 0.1 and 0.4 -> tr = sqrt(0.1 * 0.4) / 0.5 = 0.4
    (an arithmetic mean of probabilities would give 0.5). The other key is never scored."""
    r = record(0, k=2)
    probs = {(r["question"], r["paraphrased_answer"]): 0.5,
             (r["question"], r["perturbed_answer"][0]): 0.1, (r["question"], r["perturbed_answer"][1]): 0.4}
    model = GoldProbability(len(tokenizer), tokenizer.eos_token_id, by_answer(tokenizer, probs))
    tr = truth_ratios(model, tokenizer, [r], "paraphrased_answer", MAX_LEN)
    assert tr.item() == pytest.approx(0.4, rel=REL)
    assert truth_ratio_forget(tr) == pytest.approx(0.4, rel=REL)
    assert truth_ratio_utility(tr) == pytest.approx(0.6, rel=REL)


def test_truth_ratios_regroup_many_items_batched_together(tokenizer):
    """Item i: correct at 0.8, all perturbed at p_i -> tr_i = p_i / 0.8, in the items' order,
    whatever the batch size (perturbed answers of different items share batches)."""
    records = [record(i, k=3) for i in range(5)]
    p = [0.1, 0.2, 0.4, 0.8, 0.6]
    probs = {(r["question"], r["answer"]): 0.8 for r in records}
    probs |= {(r["question"], a): p[i] for i, r in enumerate(records) for a in r["perturbed_answer"]}
    model = GoldProbability(len(tokenizer), tokenizer.eos_token_id, by_answer(tokenizer, probs))
    for batch_size in (1, 4, 32):
        tr = truth_ratios(model, tokenizer, records, "answer", MAX_LEN, batch_size=batch_size)
        assert tr.tolist() == pytest.approx([x / 0.8 for x in p], rel=REL)


def test_forget_truth_ratios_use_the_paraphrased_answer(tokenizer):
    r = record(0, k=2)
    probs = {(r["question"], r["paraphrased_answer"]): 0.5, (r["question"], r["answer"]): 0.9}
    probs |= {(r["question"], a): 0.25 for a in r["perturbed_answer"]}
    model = GoldProbability(len(tokenizer), tokenizer.eos_token_id, by_answer(tokenizer, probs))
    cfg = TofuEvalConfig(max_length=MAX_LEN, batch_size=4, max_new_tokens=4)
    assert forget_truth_ratios(model, tokenizer, [r], cfg).item() == pytest.approx(0.5, rel=REL)


def test_truth_ratio_aggregates_on_known_values():
    tr = torch.tensor([0.5, 2.0, 1.0])
    assert truth_ratio_forget(tr) == pytest.approx((0.5 + 0.5 + 1.0) / 3)  # min(tr, 1/tr)
    assert truth_ratio_utility(tr) == pytest.approx(0.5 / 3)  # max(0, 1 - tr)


# --------------------------------------------------------------------------- probability


def test_retain_probability_is_not_normalised(tokenizer):
    records = [record(i) for i in range(2)]
    probs = {(r["question"], r["answer"]): p for r, p in zip(records, [0.3, 0.7])}
    model = GoldProbability(len(tokenizer), tokenizer.eos_token_id, by_answer(tokenizer, probs))
    assert answer_probability(model, tokenizer, records, False, MAX_LEN) == pytest.approx(0.5, rel=REL)
    uniform = uniform_model(len(tokenizer))
    assert answer_probability(uniform, tokenizer, records, False, MAX_LEN) == pytest.approx(1 / len(tokenizer), rel=REL)


@pytest.mark.parametrize("k", [3, 5])
def test_uniform_model_normalised_probability_is_one_over_options(tokenizer, k):
    records = [record(i, k) for i in range(3)]
    prob = answer_probability(uniform_model(len(tokenizer)), tokenizer, records, True, MAX_LEN)
    assert prob == pytest.approx(1 / (1 + k), rel=REL)


def test_normalised_probability_on_known_values(tokenizer):
    """p_correct = 0.6, perturbed 0.1, 0.2, 0.3 -> 0.6 / (0.6 + 0.6) = 0.5."""
    r = record(0, k=3)
    probs = {(r["question"], r["answer"]): 0.6}
    probs |= {(r["question"], a): p for a, p in zip(r["perturbed_answer"], [0.1, 0.2, 0.3])}
    model = GoldProbability(len(tokenizer), tokenizer.eos_token_id, by_answer(tokenizer, probs))
    assert answer_probability(model, tokenizer, [r], True, MAX_LEN) == pytest.approx(0.5, rel=REL)


# --------------------------------------------------------------------------- ROUGE, FQ, MU


def test_rouge_l_recall_known_cases():
    assert rouge_l_recall(["The author was born in Lisbon."], ["The author was born in Lisbon."]) == 1.0
    assert rouge_l_recall(["gothic mystery"], ["baker pilot"]) == 0.0
    # stems: [run, dog] vs [the, dog, run]: LCS 1 over 3 reference tokens (precision would be 1/2)
    assert rouge_l_recall(["running dogs"], ["the dog runs"]) == pytest.approx(1 / 3)
    assert rouge_l_recall(["a b", "x"], ["a b", "y"]) == pytest.approx(0.5)  # mean over items
    with pytest.raises(ValueError):
        rouge_l_recall(["a"], [])


def test_forget_quality_is_the_ks_p_value():
    a = torch.linspace(0.1, 2.0, 40)
    assert forget_quality(a, a.clone()) == pytest.approx(1.0)
    low, high = torch.arange(20.0), torch.arange(100.0, 120.0)
    assert forget_quality(low, high) < 1e-10
    rng = np.random.default_rng(0)
    x, y = rng.lognormal(size=30), rng.lognormal(0.3, size=25)
    expected = stats.ks_2samp(x, y).pvalue
    assert forget_quality(torch.tensor(x), torch.tensor(y)) == pytest.approx(expected, rel=1e-12)
    assert log10_fq(torch.tensor(x), torch.tensor(y)) == pytest.approx(math.log10(expected))


def test_model_utility_is_the_harmonic_mean_of_the_nine_parts():
    assert model_utility(dict.fromkeys(UTILITY_PARTS, 0.3)) == pytest.approx(0.3)
    assert model_utility(dict.fromkeys(UTILITY_PARTS, 1.0) | {"world_facts_tr": 0.5}) == pytest.approx(9 / 10)
    assert model_utility(dict.fromkeys(UTILITY_PARTS, 0.8) | {"retain_rouge": 0.0}) == 0.0
    with pytest.raises(KeyError):
        model_utility(dict.fromkeys(UTILITY_PARTS[:-1], 0.5))


def without_paraphrase(r):
    return {k: v for k, v in r.items() if k != "paraphrased_answer"}


def test_utility_parts_on_known_probabilities_and_generations(tokenizer):
    """Every part by hand. retain: answer 0.3, paraphrase 0.5, perturbed 0.1 -> prob 0.3
    (not normalised), tr part 1 - 0.1/0.5; one of two answers generated exactly -> ROUGE 1/2.
    real authors: answer 0.6, 3 perturbed at 0.2 -> prob 0.6/1.2, tr part 1 - 0.2/0.6, nothing
    generated -> ROUGE 0 (so MU = 0). world facts: answer 0.9, perturbed 0.05 -> prob 0.9/1.05,
    tr part 1 - 0.05/0.9; the answer is generated, then EOS, then junk that must be cut."""
    retain = [record(i, 5) for i in range(2)]
    real = [without_paraphrase(record(i, 3)) for i in range(2, 5)]
    world = [without_paraphrase(record(i, 3)) for i in range(5, 7)]
    probs = {}
    for records, p_answer, p_wrong in ((retain, 0.3, 0.1), (real, 0.6, 0.2), (world, 0.9, 0.05)):
        for r in records:
            probs[(r["question"], r["answer"])] = p_answer
            probs |= {(r["question"], a): p_wrong for a in r["perturbed_answer"]}
    probs |= {(r["question"], r["paraphrased_answer"]): 0.5 for r in retain}
    eos = tokenizer.eos_token_id
    junk = answer_ids(tokenizer, "gothic mystery novels")
    script = {retain[0]["question"]: answer_ids(tokenizer, retain[0]["answer"]) + [eos]}
    script |= {r["question"]: answer_ids(tokenizer, r["answer"]) + [eos] + junk for r in world}
    model = GoldProbability(len(tokenizer), eos, by_answer(tokenizer, probs),
                            generations={tuple(prompt_ids(tokenizer, q)): ids for q, ids in script.items()})
    roles = {"retain_perturbed": retain, "real_authors_perturbed": real, "world_facts_perturbed": world}
    parts = utility_parts(model, tokenizer, roles, TofuEvalConfig(max_length=MAX_LEN, batch_size=3, max_new_tokens=20))
    expected = {"retain_prob": 0.3, "retain_rouge": 0.5, "retain_tr": 1 - 0.1 / 0.5,
                "real_authors_prob": 0.5, "real_authors_rouge": 0.0, "real_authors_tr": 1 - 0.2 / 0.6,
                "world_facts_prob": 0.9 / 1.05, "world_facts_rouge": 1.0, "world_facts_tr": 1 - 0.05 / 0.9}
    assert tuple(parts) == UTILITY_PARTS
    assert parts == pytest.approx(expected, rel=REL)
    assert model_utility(parts) == 0.0


def test_utility_parts_match_the_single_metrics(tokenizer, llama):
    """Each of the 9 parts equals its metric computed alone, with the right correct answer
    per split (retain: paraphrased; real authors, world facts: the answer)."""
    roles = {"retain_perturbed": [record(i, 5) for i in range(3)],
             "real_authors_perturbed": [without_paraphrase(record(i, 3)) for i in range(3, 6)],
             "world_facts_perturbed": [without_paraphrase(record(i, 3)) for i in range(6, 8)]}
    cfg = TofuEvalConfig(max_length=MAX_LEN, batch_size=4, max_new_tokens=6)
    parts = utility_parts(llama, tokenizer, roles, cfg)
    assert tuple(parts) == UTILITY_PARTS
    for prefix, role, correct, normalised in (("retain", "retain_perturbed", "paraphrased_answer", False),
                                               ("real_authors", "real_authors_perturbed", "answer", True),
                                               ("world_facts", "world_facts_perturbed", "answer", True)):
        records = roles[role]
        tr = truth_ratios(llama, tokenizer, records, correct, MAX_LEN)
        generated = greedy_generate(llama, tokenizer, [r["question"] for r in records], 6)
        assert parts[f"{prefix}_tr"] == pytest.approx(truth_ratio_utility(tr), abs=1e-6)
        assert parts[f"{prefix}_prob"] == pytest.approx(
            answer_probability(llama, tokenizer, records, normalised, MAX_LEN), rel=1e-5)
        assert parts[f"{prefix}_rouge"] == pytest.approx(rouge_l_recall(generated, [r["answer"] for r in records]))
    assert model_utility(parts) == pytest.approx(stats.hmean([parts[k] for k in UTILITY_PARTS]))


@pytest.mark.parametrize("chat", [False, True])
def test_grouped_scoring_equals_scoring_each_pair(tokenizer, llama, chat):
    """One prompt pass with a repeated KV cache gives every answer the loss it gets alone."""
    from unloc.metrics.tofu import grouped_answer_losses

    if chat:
        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
                                   "{% if add_generation_prompt %}<assistant>{% endif %}")
    questions = ["Where?", "Where was the author born?", "Which award did he win for his debut in Lisbon?"]
    groups = [["Lisbon.", "The author was born in Lisbon.", "A baker."],
              ["In Lisbon.", "She writes gothic mystery novels.", "He"],
              ["The Golden Quill.", "Her father was a baker and her mother a pilot.", "No."]]
    grouped = grouped_answer_losses(llama, tokenizer, questions, groups, MAX_LEN, batch_size=4)
    pairs = [(q, a) for q, g in zip(questions, groups) for a in g]
    single = answer_losses(llama, tokenizer, pairs, MAX_LEN, batch_size=1).view(3, 3)
    torch.testing.assert_close(grouped, single, rtol=0, atol=1e-5)


def test_the_lm_head_on_real_answer_positions_scores_as_the_models_own_logits(tokenizer, llama, monkeypatch):
    """Grouped scoring runs the LM head on real answer positions only, in chunks smaller than a
    batch; the losses and ES equal those of the model's full logits (padding included)."""
    from unloc.metrics import tofu

    assert llama.config.model_type in tofu.HEAD_IS_LOGITS
    questions = ["Where?", "Where was the author born?", "Which award did he win for his debut in Lisbon?"]
    groups = [["Lisbon.", "The author was born in Lisbon, a city by the sea.", "A"],
              ["In Lisbon.", "She writes gothic mystery novels.", "He"],
              ["The Golden Quill.", "Her father was a baker and her mother a pilot.", "No."]]
    monkeypatch.setattr(tofu, "HEAD_ROWS", 7)  # several chunks, one of them partial
    ours = tofu.grouped_answer_scores(llama, tokenizer, questions, groups, MAX_LEN, batch_size=9)
    monkeypatch.setattr(tofu, "HEAD_IS_LOGITS", frozenset())
    full = tofu.grouped_answer_scores(llama, tokenizer, questions, groups, MAX_LEN, batch_size=9)
    torch.testing.assert_close(ours.loss, full.loss, rtol=0, atol=1e-6)
    assert torch.equal(ours.k_star, full.k_star) and torch.equal(ours.length, full.length)
    assert (ours.length > 0).all() and ours.length.max() > 3 * ours.length.min()  # padding was skipped
