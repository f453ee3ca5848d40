"""The `unloc eval` suite (metrics/suite.py) against its definitions, and open-unlearning's
conventions against a literal transcription of its computation.

``GoldProbability`` puts a chosen probability on every answer token, so each metric's value is
known by construction; the tiny Llama checks what needs a real forward pass (Min-k% Prob, the
open-unlearning conventions, batch-size invariance).
"""

import copy
import math

import numpy as np
import pytest
import torch
from scipy import stats

from known_suite import FORGET, HOLDOUT, PROBES, RETAIN, qa
from unloc.data.collate import answer_ids, encode_qa, prompt_ids
from unloc.evaluation import eval_json, item_rows, score, summary_table
from unloc.metrics import curve, mia
from unloc.metrics.curve import PointScores
from unloc.metrics.generation import greedy_generate
from unloc.metrics.suite import (
    EVAL_METRICS,
    SCORED_ROLES,
    SPLIT_ROLES,
    Reference,
    Suite,
    available,
    evaluate,
    generation_roles,
    summary,
)
from unloc.metrics.tofu import CONVENTIONS, TofuEvalConfig, grouped_answer_scores

from open_unlearning import open_unlearning_scores
from tinymodels import GoldProbability, make_tiny_model

MAX_LEN = 64
OU = CONVENTIONS["open_unlearning"]


@pytest.fixture(scope="module")
def llama(tokenizer):
    return make_tiny_model(seed=3, vocab=len(tokenizer))


# --------------------------------------------------------------------------- known by construction


ROLES = {"forget_perturbed": FORGET, "retain_perturbed": RETAIN, "real_authors_perturbed": PROBES,
         "world_facts_perturbed": PROBES[::-1], "holdout": HOLDOUT}
# p per answer token (EOS included): answers 0.8, paraphrases 0.5, perturbed 0.2 / 0.05, holdout 0.3
P_ANSWER, P_PARA, P_PERT, P_HOLDOUT = 0.8, 0.5, (0.2, 0.05), 0.3


def known_probabilities():
    probs = {}
    for records in (FORGET, RETAIN, PROBES):
        for r in records:
            probs[(r["question"], r["answer"])] = P_ANSWER
            if "paraphrased_answer" in r:
                probs[(r["question"], r["paraphrased_answer"])] = P_PARA
            for a, p in zip(r["perturbed_answer"], P_PERT):
                probs[(r["question"], a)] = p
    probs.update({(r["question"], r["answer"]): P_HOLDOUT for r in HOLDOUT})
    return probs


@pytest.fixture(scope="module")
def known_suite(tokenizer):
    """A suite on GoldProbability; the first forget and retain items generate their answers exactly."""
    table = {tuple(encode_qa(tokenizer, q, a, MAX_LEN).input_ids): p for (q, a), p in known_probabilities().items()}
    exact = {tuple(prompt_ids(tokenizer, r["question"])): answer_ids(tokenizer, r["answer"]) + [tokenizer.eos_token_id]
             for r in (FORGET[0], RETAIN[0])}
    model = GoldProbability(len(tokenizer), tokenizer.eos_token_id, lambda row: table[row], generations=exact)
    cfg = TofuEvalConfig(max_length=MAX_LEN, batch_size=4, max_new_tokens=20)
    reference = Reference(np.array([0.1, 0.2, 0.3, 0.4]), 0.6, "test")
    return Suite(PointScores(model, tokenizer, ROLES, cfg, "paper", perturbed_roles=SCORED_ROLES), reference)


def agg(suite, name):
    return suite.result(name)["agg_value"]


def test_probabilities_are_exp_minus_mean_token_nll(known_suite):
    assert agg(known_suite, "forget_Q_A_Prob") == pytest.approx(P_ANSWER, rel=1e-6)
    assert agg(known_suite, "forget_Q_A_PARA_Prob") == pytest.approx(P_PARA, rel=1e-6)
    assert agg(known_suite, "forget_Q_A_PERT_Prob") == pytest.approx(np.mean(P_PERT), rel=1e-6)
    item = known_suite.result("forget_Q_A_PERT_Prob")["value_by_index"]["1"]
    assert item["prob"] == pytest.approx(list(P_PERT), rel=1e-6)
    assert item["avg_loss"] == pytest.approx([-math.log(p) for p in P_PERT], rel=1e-6)
    normalised = P_ANSWER / (P_ANSWER + sum(P_PERT))
    assert agg(known_suite, "ra_Q_A_Prob_normalised") == pytest.approx(normalised, rel=1e-6)


def test_truth_ratios_and_their_two_aggregates(known_suite):
    geometric = math.sqrt(P_PERT[0] * P_PERT[1])
    forget = known_suite.result("forget_truth_ratio")
    assert [v["score"] for v in forget["value_by_index"].values()] == pytest.approx([geometric / P_PARA] * 3, rel=1e-6)
    assert forget["agg_value"] == pytest.approx(min(geometric / P_PARA, P_PARA / geometric), rel=1e-6)
    # retain: against the paraphrase; real authors: against the answer (TOFU's choice)
    assert agg(known_suite, "retain_Truth_Ratio") == pytest.approx(1 - geometric / P_PARA, rel=1e-6)
    assert agg(known_suite, "ra_Truth_Ratio") == pytest.approx(1 - geometric / P_ANSWER, rel=1e-6)


def test_rouge_and_model_utility(known_suite):
    # one of 3 forget items and one of 2 retain items generate their answer; the rest generate nothing
    assert agg(known_suite, "forget_Q_A_ROUGE") == pytest.approx(1 / 3)
    assert agg(known_suite, "retain_Q_A_ROUGE") == pytest.approx(1 / 2)
    item = known_suite.result("forget_Q_A_ROUGE")["value_by_index"]["0"]
    assert (item["rougeL_recall"], item["rouge1_recall"], item["rougeL_f1"]) == (1.0, 1.0, 1.0)
    assert item["generation"] == item["ground_truth"] == FORGET[0]["answer"]
    assert agg(known_suite, "model_utility") == 0.0  # the probes generate nothing: a part is 0
    parts = [agg(known_suite, name) for name in ("retain_Q_A_Prob", "retain_Q_A_ROUGE", "retain_Truth_Ratio")]
    assert parts == pytest.approx([P_ANSWER, 0.5, 1 - math.sqrt(P_PERT[0] * P_PERT[1]) / P_PARA], rel=1e-6)


def test_es_exact_and_perturb_of_each_split_by_construction(tokenizer):
    """A token is extracted when the model's argmax is the gold one: p = 0.8 or 0.5 is, p = 0.001 is not
    ((1 - p) / 319 is larger), so each answer's ES is 1 or 0 exactly, item by item."""
    probs = known_probabilities()
    probs[(FORGET[1]["question"], FORGET[1]["paraphrased_answer"])] = 0.001
    probs[(RETAIN[0]["question"], RETAIN[0]["answer"])] = 0.001
    table = {tuple(encode_qa(tokenizer, q, a, MAX_LEN).input_ids): p for (q, a), p in probs.items()}
    model = GoldProbability(len(tokenizer), tokenizer.eos_token_id, lambda row: table[row])
    cfg = TofuEvalConfig(max_length=MAX_LEN, batch_size=4, max_new_tokens=20)
    suite = Suite(PointScores(model, tokenizer, ROLES, cfg, "paper", perturbed_roles=SCORED_ROLES))
    per_item = {name: [v["score"] for v in suite.result(name)["value_by_index"].values()]
                for name in ("extraction_strength", "forget_para_extraction_strength", "retain_extraction_strength",
                             "retain_para_extraction_strength")}
    assert per_item == {"extraction_strength": [1, 1, 1], "forget_para_extraction_strength": [1, 0, 1],
                        "retain_extraction_strength": [0, 1], "retain_para_extraction_strength": [1, 1]}
    assert agg(suite, "forget_para_extraction_strength") == pytest.approx(2 / 3)
    assert agg(suite, "retain_extraction_strength") == pytest.approx(0.5)


def test_mia_and_privleak(known_suite):
    """Forget answers (p 0.8) are likelier than holdout answers (p 0.3): every attack tells them
    apart (AUC 1), and Min-k% Prob of a constant-probability answer is -log p."""
    for name in ("mia_min_k", "mia_loss", "mia_zlib"):
        assert agg(known_suite, name) == 1.0
    mink = known_suite.result("mia_min_k")
    assert mink["forget"]["agg_value"] == pytest.approx(-math.log(P_ANSWER), rel=1e-6)
    assert mink["holdout"]["agg_value"] == pytest.approx(-math.log(P_HOLDOUT), rel=1e-6)
    assert agg(known_suite, "privleak") == pytest.approx(mia.privleak(1.0, 0.6))  # the reference's AUC 0.6


def test_forget_quality_is_the_ks_test_against_the_reference(known_suite):
    tr = [v["score"] for v in known_suite.result("forget_truth_ratio")["value_by_index"].values()]
    assert agg(known_suite, "forget_quality") == stats.ks_2samp(tr, [0.1, 0.2, 0.3, 0.4]).pvalue


def test_without_a_reference_fq_is_null_and_privleak_compares_with_half(known_suite):
    suite = Suite(known_suite.point)
    assert agg(suite, "forget_quality") is None
    assert agg(suite, "privleak") == pytest.approx(mia.privleak(1.0, 0.5))
    assert "forget_quality" not in summary(evaluate(suite, ["forget_quality", "privleak"]))


def test_every_metric_has_open_unlearnings_shape(known_suite):
    results = evaluate(known_suite, EVAL_METRICS.names())
    for name, result in results.items():
        assert "agg_value" in result, name
        if EVAL_METRICS[name].item_field is not None and "auc" not in result:
            items = result["value_by_index"]
            assert list(items) == [str(i) for i in range(len(ROLES[EVAL_METRICS[name].needs[0]]))]
            assert all(EVAL_METRICS[name].item_field in v for v in items.values())
    assert set(summary(results)) == {n for n in EVAL_METRICS.names() if EVAL_METRICS[n].summary}
    assert "forget_Q_A_Prob" in summary_table(summary(results))
    rows, columns = item_rows(results, ROLES)
    assert len(rows) == sum(len(v) for v in ROLES.values())
    assert {"split", "index", "question", "mia_min_k", "generation"} <= set(columns)


def test_the_mia_is_left_out_without_a_holdout_split():
    without = {k: v for k, v in ROLES.items() if k != "holdout"}
    names = available(without)
    assert "mia_min_k" not in names and "privleak" not in names and "model_utility" in names


# --------------------------------------------------------------------------- real forward passes


def test_min_k_from_the_scoring_pass_is_the_definition(tokenizer, llama):
    questions = ["Where?", "Where was the author born?"]
    groups = [["Lisbon.", "The author was born in Lisbon, by the sea."], ["In Lisbon.", "A baker."]]
    scores = grouped_answer_scores(llama, tokenizer, questions, groups, MAX_LEN, batch_size=4)
    for i, (q, group) in enumerate(zip(questions, groups)):
        for j, a in enumerate(group):
            prompt, answer = prompt_ids(tokenizer, q), answer_ids(tokenizer, a) + [tokenizer.eos_token_id]
            with torch.no_grad():
                logp = torch.log_softmax(llama(input_ids=torch.tensor([prompt + answer])).logits[0].double(), -1)
            token_logps = [logp[len(prompt) - 1 + t, tok].item() for t, tok in enumerate(answer)]
            assert scores.min_k[i, j].item() == pytest.approx(mia.min_k_score(token_logps), abs=1e-5)


def chat_tokenizer(tokenizer):
    """The test tokenizer as an instruct model's: pad = EOS, and every turn ends with EOS."""
    chat = copy.deepcopy(tokenizer)
    chat.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>\n{% endfor %}"
                          "{% if add_generation_prompt %}<assistant>{% endif %}")
    chat.pad_token = chat.eos_token
    return chat


PAIRS = [("Where was the author born?", "The author was born in Lisbon."), ("What genre?", "Gothic mystery novels."),
         ("Which award did he win for his debut?", "The Golden Quill.")]


def test_open_unlearning_conventions_reproduce_its_computation(tokenizer, llama):
    chat = chat_tokenizer(tokenizer)
    expected_loss, expected_es = open_unlearning_scores(llama, chat, PAIRS, "Be brief.")
    questions, groups = [q for q, _ in PAIRS], [[a] for _, a in PAIRS]
    ours = grouped_answer_scores(llama, chat, questions, groups, MAX_LEN, 4, "cpu", "Be brief.", OU)
    torch.testing.assert_close(ours.loss[:, 0], expected_loss.double(), rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.es("open_unlearning", torch.float64)[:, 0], expected_es, rtol=0, atol=1e-12)
    # unloc's conventions label the answer and one EOS and attend to every prompt token
    unloc = grouped_answer_scores(llama, chat, questions, groups, MAX_LEN, 4, "cpu", "Be brief.")
    assert (unloc.length < ours.length).all()  # no end of turn ("</s>", "\n") labelled
    assert (unloc.loss - ours.loss).abs().min() > 1e-5  # 10x the agreement above


def test_each_open_unlearning_convention_alone_does_not_reproduce_it(tokenizer, llama):
    """Masking the prompt's end-of-turn tokens and labelling the template's end of turn both
    change the numbers: neither alone gives open-unlearning's."""
    from dataclasses import replace

    chat = chat_tokenizer(tokenizer)
    expected, _ = open_unlearning_scores(llama, chat, PAIRS, "Be brief.")
    questions, groups = [q for q, _ in PAIRS], [[a] for _, a in PAIRS]
    for alone in (replace(OU, mask_pad_tokens=False), replace(OU, template_labels=False)):
        loss = grouped_answer_scores(llama, chat, questions, groups, MAX_LEN, 4, "cpu", "Be brief.", alone).loss
        assert (loss[:, 0] - expected.double()).abs().max() > 1e-5


def suite_roles(tokenizer):
    records = [qa(q, a, a + " Indeed.", [a.replace("The", "A"), "No."]) for q, a in PAIRS]
    probes = [{k: r[k] for k in ("question", "answer", "perturbed_answer")} for r in records]
    return {"forget_perturbed": records, "retain_perturbed": records[::-1], "real_authors_perturbed": probes,
            "world_facts_perturbed": probes[:2], "holdout": [{"question": q, "answer": a[::-1]} for q, a in PAIRS]}


@pytest.mark.parametrize("compat", sorted(CONVENTIONS))
def test_batch_size_changes_no_value_beyond_rounding_and_reruns_are_identical(tokenizer, llama, compat):
    chat = chat_tokenizer(tokenizer)
    roles = suite_roles(chat)
    names = EVAL_METRICS.names()

    def run(batch_size):
        cfg = TofuEvalConfig(MAX_LEN, batch_size, 8, "Be brief.", conventions=CONVENTIONS[compat])
        return score(llama, chat, roles, cfg, names, Reference(np.array([0.5, 1.0, 2.0]), 0.5, "t"), progress=False)

    one, seven = run(1), run(7)
    assert eval_json(run(7)) == eval_json(seven)  # identical JSON, byte for byte
    for name in names:
        a, b = one[name]["agg_value"], seven[name]["agg_value"]
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6), name


def test_every_split_is_generated_in_one_stream_with_the_answers_it_gets_alone(tokenizer, llama, monkeypatch):
    """score() generates the four splits' greedy answers in one continuously batched call, and
    each split's answers are those it gets when generated alone."""
    chat = chat_tokenizer(tokenizer)
    roles = suite_roles(chat)
    cfg = TofuEvalConfig(MAX_LEN, 3, 8, "Be brief.")
    names = [n for n in EVAL_METRICS.names() if EVAL_METRICS[n].generates]
    assert generation_roles(names) == SCORED_ROLES
    alone = {role: PointScores(llama, chat, roles, cfg, "paper").generations(role) for role in SCORED_ROLES}
    calls = []
    monkeypatch.setattr(curve, "greedy_generate", lambda model, tok, questions, *args: calls.append(len(questions))
                        or greedy_generate(model, tok, questions, *args))
    results = score(llama, chat, roles, cfg, names, progress=False)
    assert calls == [sum(len(roles[role]) for role in SCORED_ROLES)]
    for prefix, role in SPLIT_ROLES.items():
        generated = [v["generation"] for v in results[f"{prefix}_Q_A_ROUGE"]["value_by_index"].values()]
        assert generated == alone[role]
    assert len({g for role in SCORED_ROLES for g in alone[role]}) > 1  # not one answer for everything
