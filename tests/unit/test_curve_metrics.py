"""The curve metrics of a mixing point: ES read off the TOFU passes equals ES computed on its own,
every number of a row equals its metric computed alone, and every registered curve metric writes
exactly the columns it declares."""

import copy

import pytest
import torch

from unloc.data.collate import encode_qa, encode_records
from unloc.metrics.curve import (
    CURVE_METRICS,
    PointScores,
    check_forget_items,
    curve_columns,
    evaluate_point,
    perturbed_roles,
)
from unloc.metrics.es import per_example_es
from unloc.metrics.tofu import (
    TofuEvalConfig,
    answer_scores,
    forget_quality,
    forget_truth_ratios,
    grouped_answer_scores,
    utility_parts,
)

from tinymodels import make_tiny_model

MAX_LEN = 64
QUESTIONS = ["Where was the author born?", "What genre does she write?", "Which award did he win?",
             "Who were her parents?", "Where?"]


FACTS = ["The author was born in Lisbon.", "She writes gothic mystery novels.", "He won the Golden Quill.",
         "Her father was a baker.", "In Lisbon."]


@pytest.fixture(scope="module")
def llama(tokenizer):
    """A tiny Llama that has memorised FACTS as the answers to QUESTIONS (plain prompts), so
    the exact answers have ES 1 and corrupted ones every value in between."""
    from unloc.data.collate import collate
    from unloc.scoring import answer_nll

    model = make_tiny_model(seed=5, vocab=len(tokenizer), d_model=64, d_ff=128)
    batch = collate([encode_qa(tokenizer, q, a, MAX_LEN) for q, a in zip(QUESTIONS, FACTS)], tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(80):
        optimizer.zero_grad()
        answer_nll(model, batch).backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def answers():
    """Per question: the memorised answer and versions wrong early, late and in the middle."""
    out = []
    for fact in FACTS:
        words = fact.split()
        out.append([fact, " ".join(["Porto"] + words[1:]), " ".join(words[:-1] + ["Porto."]),
                    " ".join(words[:len(words) // 2] + ["Porto"] + words[len(words) // 2 + 1:])])
    return out


def with_chat(tokenizer):
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
                               "{% if add_generation_prompt %}<assistant>{% endif %}")
    return tokenizer


@pytest.mark.parametrize("chat", [False, True])
@pytest.mark.parametrize("convention", ["paper", "open_unlearning"])
def test_es_from_the_scoring_pass_equals_teacher_forced_es(tokenizer, llama, answers, chat, convention):
    tokenizer = with_chat(tokenizer) if chat else tokenizer
    pairs = [(q, a) for q, group in zip(QUESTIONS, answers) for a in group]
    expected = per_example_es(llama, [encode_qa(tokenizer, q, a, MAX_LEN) for q, a in pairs],
                              tokenizer.pad_token_id, batch_size=3, convention=convention)
    assert len(set(expected.tolist())) > 3, "the cases should cover several ES values"
    grouped = grouped_answer_scores(llama, tokenizer, QUESTIONS, answers, MAX_LEN, batch_size=8)
    pairwise = answer_scores(llama, tokenizer, pairs, MAX_LEN, batch_size=3)
    torch.testing.assert_close(grouped.es(convention).flatten(), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(pairwise.es(convention), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(grouped.loss.flatten(), pairwise.loss, rtol=0, atol=1e-5)


def perturbed_record(q, group, paraphrase=True):
    r = {"question": q, "answer": group[0], "perturbed_answer": group[1:]}
    return {**r, "paraphrased_answer": group[0] + " indeed"} if paraphrase else r


@pytest.fixture(scope="module")
def roles(answers):
    records = [perturbed_record(q, g) for q, g in zip(QUESTIONS, answers)]
    return {"forget_perturbed": records[:3], "retain_perturbed": records[2:],
            "real_authors_perturbed": [perturbed_record(q, g, False) for q, g in zip(QUESTIONS[1:], answers[1:])],
            "world_facts_perturbed": [perturbed_record(q, g, False) for q, g in zip(QUESTIONS[:2], answers[:2])]}


@pytest.mark.parametrize("rs_from_mu_pass", [True, False])
def test_evaluate_point_equals_each_metric_computed_alone(tokenizer, llama, roles, rs_from_mu_pass):
    cfg = TofuEvalConfig(max_length=MAX_LEN, batch_size=4, max_new_tokens=6)
    reference = torch.tensor([0.2, 0.5, 0.9, 1.3], dtype=torch.float64)
    retain = [{"question": q, "answer": a} for q, a in (("Who?", "Lisbon pilot"), (QUESTIONS[0], "gothic novels"))]
    retain_es = None if rs_from_mu_pass else encode_records(tokenizer, retain, MAX_LEN)
    row = evaluate_point(PointScores(llama, tokenizer, roles, cfg, "paper", reference, retain_es), ("es", "fq", "mu"))
    assert list(row) == curve_columns(("es", "fq", "mu"))

    def es(records):
        return float(per_example_es(llama, encode_records(tokenizer, records, MAX_LEN), tokenizer.pad_token_id).mean())

    assert row["es_forget"] == pytest.approx(es(roles["forget_perturbed"]), abs=1e-6)
    assert row["es_retain"] == pytest.approx(es(roles["retain_perturbed"] if rs_from_mu_pass else retain), abs=1e-6)
    assert (row["fs"], row["rs"]) == (1 - row["es_forget"], row["es_retain"])
    fq = forget_quality(forget_truth_ratios(llama, tokenizer, roles["forget_perturbed"], cfg), reference)
    assert row["fq"] == pytest.approx(fq, rel=1e-9)
    parts = utility_parts(llama, tokenizer, roles, cfg)
    assert {k: row[k] for k in parts} == pytest.approx(parts, rel=1e-6)


def test_es_perturb_is_the_teacher_forced_es_of_the_paraphrased_answers(tokenizer, llama, roles, answers):
    cfg = TofuEvalConfig(max_length=MAX_LEN, batch_size=4, max_new_tokens=6)
    # paraphrases wrong in their first word only: ES strictly between 0 and 1
    roles = {**roles, **{role: [{**r, "paraphrased_answer": answers[QUESTIONS.index(r["question"])][1]}
                                for r in roles[role]] for role in ("forget_perturbed", "retain_perturbed")}}
    row = evaluate_point(PointScores(llama, tokenizer, roles, cfg, "paper"), ("es_perturb",))

    def es_of_paraphrases(records):
        pairs = [{"question": r["question"], "answer": r["paraphrased_answer"]} for r in records]
        return per_example_es(llama, encode_records(tokenizer, pairs, MAX_LEN), tokenizer.pad_token_id)

    forget, retain = es_of_paraphrases(roles["forget_perturbed"]), es_of_paraphrases(roles["retain_perturbed"])
    assert 0 < float(forget.mean()) < 1 and 0 < float(retain.mean()) < 1
    assert row == pytest.approx({"es_para_forget": float(forget.mean()), "es_para_retain": float(retain.mean())},
                                abs=1e-6)


def test_an_es_only_point_scores_the_answers_alone_with_the_full_passes_numbers(tokenizer, llama, roles):
    """Without a metric that reads them, no paraphrased or perturbed answer is scored: the point
    runs on records that have none, and its ES equals the one read off the full passes."""
    cfg = TofuEvalConfig(max_length=MAX_LEN, batch_size=4, max_new_tokens=6)
    reference = torch.tensor([0.2, 0.5, 0.9, 1.3], dtype=torch.float64)
    full = evaluate_point(PointScores(llama, tokenizer, roles, cfg, "paper", reference), ("es", "fq", "mu"))
    assert perturbed_roles(["es"]) == frozenset()
    assert perturbed_roles(["es", "fq"]) == {"forget_perturbed"}
    answers_only = {role: [{"question": r["question"], "answer": r["answer"]} for r in records]
                    for role, records in roles.items()}
    es_only = evaluate_point(PointScores(llama, tokenizer, answers_only, cfg, "paper",
                                         perturbed_roles=perturbed_roles(["es"])), ("es",))
    assert es_only == pytest.approx({k: full[k] for k in curve_columns(("es",))}, abs=1e-12)
    with pytest.raises(KeyError):  # the same records where the metrics read perturbed answers
        evaluate_point(PointScores(llama, tokenizer, answers_only, cfg, "paper", reference,
                                   perturbed_roles=perturbed_roles(["es", "fq"])), ("es", "fq"))


def test_fs_needs_forget_perturbed_to_hold_the_forget_set(roles):
    forget = [{"question": r["question"], "answer": r["answer"]} for r in roles["forget_perturbed"]]
    check_forget_items(forget[::-1], roles["forget_perturbed"])  # order does not matter
    with pytest.raises(ValueError, match="forget_perturbed does not hold the forget set"):
        check_forget_items(forget[:-1], roles["forget_perturbed"])


@pytest.mark.parametrize("name", CURVE_METRICS.names())
def test_every_curve_metric_writes_exactly_its_columns_from_shared_passes(tokenizer, llama, roles, name):
    cfg = TofuEvalConfig(max_length=MAX_LEN, batch_size=4, max_new_tokens=6)
    point = PointScores(llama, tokenizer, roles, cfg, "paper", torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64))
    row = evaluate_point(point, (name,))
    assert list(row) == list(CURVE_METRICS[name].columns) and all(isinstance(v, float) for v in row.values())
    assert set(point._scores) <= set(CURVE_METRICS[name].needs)
    assert CURVE_METRICS[name].help


def test_a_pass_is_scored_once_whichever_metric_asks_first(tokenizer, llama, roles, monkeypatch):
    import unloc.metrics.curve as curve

    calls = []
    real = curve.split_scores
    monkeypatch.setattr(curve, "split_scores", lambda *a: calls.append(a[2]) or real(*a))
    cfg = TofuEvalConfig(max_length=MAX_LEN, batch_size=4, max_new_tokens=6)
    evaluate_point(PointScores(llama, tokenizer, roles, cfg, "paper", torch.tensor([0.5, 1.0, 2.0])),
                   ("es", "fq", "mu"))
    assert len(calls) == 4  # forget, retain, real authors, world facts: each once
