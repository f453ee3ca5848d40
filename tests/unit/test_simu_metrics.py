"""SIMU's TOFU metrics (metrics/simu.py and their suite entries): exact match on hand cases, the
aggregate against the paper's Table 1, and the suite entries on a model whose generations are chosen."""

from types import SimpleNamespace

import numpy as np
import pytest

from known_suite import FORGET, HOLDOUT, PROBES, RETAIN
from unloc.data.collate import answer_ids, encode_qa, prompt_ids
from unloc.metrics import curve
from unloc.metrics.curve import PointScores
from unloc.metrics.generation import greedy_generate
from unloc.metrics.simu import exact_match, normalise_answer, simu_aggregate
from unloc.metrics.suite import EVAL_METRICS, SCORED_ROLES, SIMU_AGGREGATE_PARTS, Suite, available
from unloc.metrics.tofu import TofuEvalConfig

from tinymodels import GoldProbability

# --------------------------------------------------------------------------- exact match


@pytest.mark.parametrize("text,normalised", [
    ("  Paris. ", "paris"),
    ("The   Eiffel\tTower\nis in PARIS!", "the eiffel tower is in paris"),
    ('He wrote "The Guilt Closet."', 'he wrote "the guilt closet'),  # the closing quote and the stop go
    ("U.S.A.", "u.s.a"),  # only the end loses punctuation
    ("...", ""),
])
def test_normalise_answer(text, normalised):
    assert normalise_answer(text) == normalised


@pytest.mark.parametrize("generation,answer", [
    ("Paris", "Paris"),
    (" paris.", "Paris"),  # equal after normalisation
    ("Canberra!!", "canberra"),
    ("The Eiffel Tower is in Paris, France.", "Paris"),  # contained, followed by punctuation
    ("The author is Jaime   Vasquez, born in 1958.", "Jaime Vasquez"),  # whitespace collapsed
    ("Yes, Jaime Vasquez was born on the 25th of February in the year 1958. He",
     "Yes, Jaime Vasquez was born on the 25th of February in the year 1958."),  # the sentence, then more
])
def test_exact_match_is_1_when_the_answer_is_in_the_generation(generation, answer):
    assert exact_match(generation, answer) == 1.0


@pytest.mark.parametrize("generation,answer", [
    ("London", "Paris"),
    ("", "Paris"),
    ("The Niles are rivers.", "Nile"),  # inside a longer word
    ("Antarctica", "Antarctic"),
    ("Author 1 was born in", "Author 1 was born in Lisbon."),  # only part of the answer
    ("Prize 10", "Prize 1"),
    ("Jaime, Vasquez", "Jaime Vasquez"),  # punctuation inside is kept
])
def test_exact_match_is_0_otherwise(generation, answer):
    assert exact_match(generation, answer) == 0.0


def test_exact_match_needs_an_answer_with_words():
    with pytest.raises(ValueError, match="answer with words"):
        exact_match("anything", " ?! ")


# --------------------------------------------------------------------------- the aggregate and Table 1


# seeds/003 Table 1 (TOFU forget10): model, approach, Aggregate, EM-F %, ROUGE-L-F, MIA, EM-R %, ROUGE-L-R
TABLE_1 = [
    ("LLaMA2-7B", "Original", 0.4437, 85.25, 0.9796, 0.7894, 85.75, 0.9825),
    ("LLaMA2-7B", "FO-GradDiff", 0.4738, 72.75, 0.5174, 0.7627, 76.50, 0.6115),
    ("LLaMA2-7B", "SO-GradDiff", 0.7957, 10.25, 0.0221, 0.2156, 72.25, 0.5960),
    ("LLaMA2-7B", "SIMU-GradDiff", 0.7963, 20.00, 0.0241, 0.2440, 78.00, 0.6694),
    ("OLMo-1B", "Original", 0.4227, 77.50, 0.8503, 0.7727, 78.75, 0.8239),
    ("OLMo-1B", "FO-GradDiff", 0.7059, 26.50, 0.0214, 0.1957, 63.00, 0.3814),
    ("OLMo-1B", "SO-GradDiff", 0.8235, 22.75, 0.0077, 0.1889, 78.00, 0.7614),
    ("OLMo-1B", "SIMU-GradDiff", 0.8438, 10.25, 0.0029, 0.1923, 75.50, 0.7616),
]
# OLMo-1B Original prints 0.4227 where its own columns give 0.4427: a misprint in the paper, most likely
MISPRINTED = ("OLMo-1B", "Original")


def aggregate_of_row(row) -> float:
    _, _, _, em_forget, rouge_forget, mia, em_retain, rouge_retain = row
    return simu_aggregate(em_forget / 100, rouge_forget, mia, em_retain / 100, rouge_retain)


@pytest.mark.parametrize("row", [r for r in TABLE_1 if r[:2] != MISPRINTED], ids=lambda r: " ".join(r[:2]))
def test_simu_aggregate_reproduces_table_1(row):
    assert aggregate_of_row(row) == pytest.approx(row[2], abs=1e-4)


def test_the_misprinted_row_of_table_1_is_off_by_0_02():
    (row,) = [r for r in TABLE_1 if r[:2] == MISPRINTED]
    assert abs(aggregate_of_row(row) - row[2]) > 1e-3
    assert aggregate_of_row(row) == pytest.approx(0.4427, abs=1e-4)


def test_simu_aggregate_rejects_percentages():
    with pytest.raises(ValueError, match="em_forget"):
        simu_aggregate(85.25, 0.9796, 0.7894, 0.8575, 0.9825)


# --------------------------------------------------------------------------- the suite entries


ROLES = {"forget_perturbed": FORGET, "retain_perturbed": RETAIN, "real_authors_perturbed": PROBES,
         "world_facts_perturbed": PROBES, "holdout": HOLDOUT}
GENERATIONS = {  # by question; the rest generate nothing
    FORGET[0]["question"]: FORGET[0]["answer"],  # the answer itself
    FORGET[1]["question"]: "Yes: AUTHOR 1 was born in   Lisbon, by the sea",  # contains it, normalised
    RETAIN[0]["question"]: RETAIN[0]["answer"],
    RETAIN[1]["question"]: "Writer 1 writes gothic",  # part of it
    PROBES[0]["question"]: "The baker won prize 0.",
    PROBES[1]["question"]: "The baker won prize 10.",  # "prize 1" only inside "prize 10"
}
EXPECTED_EM = {"forget_Q_A_EM": [1, 1, 0], "retain_Q_A_EM": [1, 0], "wf_Q_A_EM": [1, 0]}


def known_probabilities():
    """p per answer token: answers 0.8, paraphrases 0.5, perturbed 0.2 / 0.05, holdout 0.3 (every MIA: AUC 1)."""
    probs = {}
    for r in (*FORGET, *RETAIN, *PROBES):
        probs[(r["question"], r["answer"])] = 0.8
        if "paraphrased_answer" in r:
            probs[(r["question"], r["paraphrased_answer"])] = 0.5
        for a, p in zip(r["perturbed_answer"], (0.2, 0.05)):
            probs[(r["question"], a)] = p
    probs.update({(r["question"], r["answer"]): 0.3 for r in HOLDOUT})
    return probs


@pytest.fixture
def suite(tokenizer):
    table = {tuple(encode_qa(tokenizer, q, a, 64).input_ids): p for (q, a), p in known_probabilities().items()}
    generations = {tuple(prompt_ids(tokenizer, q)): answer_ids(tokenizer, text) + [tokenizer.eos_token_id]
                   for q, text in GENERATIONS.items()}
    model = GoldProbability(len(tokenizer), tokenizer.eos_token_id, lambda row: table[row], generations=generations)
    cfg = TofuEvalConfig(max_length=64, batch_size=4, max_new_tokens=24)
    return Suite(PointScores(model, tokenizer, ROLES, cfg, "paper", perturbed_roles=SCORED_ROLES))


def test_em_entries_score_each_greedy_answer(suite):
    for name, expected in EXPECTED_EM.items():
        result = suite.result(name)
        assert [v["score"] for v in result["value_by_index"].values()] == expected, name
        assert result["agg_value"] == pytest.approx(np.mean(expected)), name


def test_em_reads_the_generations_rouge_reads_without_generating_again(suite, monkeypatch):
    calls = []
    monkeypatch.setattr(curve, "greedy_generate", lambda model, tok, questions, *args: calls.append(len(questions))
                        or greedy_generate(model, tok, questions, *args))
    rouge = suite.result("forget_Q_A_ROUGE")["value_by_index"]
    em = suite.result("forget_Q_A_EM")["value_by_index"]
    assert calls == [len(FORGET)]  # one generation of the split, for both
    assert [em[i]["score"] for i in em] == [exact_match(rouge[i]["generation"], r["answer"])
                                            for i, r in zip(rouge, FORGET)]


def test_the_simu_aggregate_entry_is_simu_aggregate_of_its_parts(suite):
    parts = [suite.result(name)["agg_value"] for name in SIMU_AGGREGATE_PARTS]
    assert parts[:1] + parts[2:4] == pytest.approx([2 / 3, 1.0, 1 / 2])  # EM_F, MIA (AUC 1), EM_R
    assert suite.result("simu_aggregate")["agg_value"] == pytest.approx(simu_aggregate(*parts))
    assert EVAL_METRICS["simu_aggregate"].summary


def test_the_simu_aggregate_entry_reads_the_loss_based_mia():
    """On hand-set results, the three MIAs differing: only mia_loss's AUC moves the aggregate."""
    hand_set = {"forget_Q_A_EM": 0.25, "forget_Q_A_ROUGE": 0.125, "mia_loss": 0.75, "retain_Q_A_EM": 0.5,
                "retain_Q_A_ROUGE": 0.625, "mia_min_k": 0.1, "mia_zlib": 0.9}
    suite = Suite(SimpleNamespace(cfg=SimpleNamespace(conventions=None)))  # no model: nothing can be scored
    suite._results.update({name: {"agg_value": value} for name, value in hand_set.items()})
    expected = np.mean([1 - 0.25, 1 - 0.125, 1 - 0.75, 0.5, 0.625])
    assert suite.result("simu_aggregate")["agg_value"] == pytest.approx(expected)
    assert expected == pytest.approx(simu_aggregate(0.25, 0.125, 0.75, 0.5, 0.625))


def test_without_a_holdout_split_the_simu_aggregate_is_left_out_and_em_kept():
    names = available({role: records for role, records in ROLES.items() if role != "holdout"})
    assert "simu_aggregate" not in names
    assert {"forget_Q_A_EM", "retain_Q_A_EM", "wf_Q_A_EM"} <= set(names)
