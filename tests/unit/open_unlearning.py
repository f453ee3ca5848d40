"""open-unlearning's TOFU scoring, transcribed from its source (src/data/utils.py
``preprocess_chat_instance``, the collator, src/evals/metrics/utils.py ``evaluate_probability``
and memorization.py ``extraction_strength``): the oracle that `--compat open_unlearning` is
tested against. Deliberately literal, not shared with the code under test."""

import torch


def open_unlearning_scores(model, tokenizer, pairs, system_prompt):
    """open-unlearning's avg_loss and ES, transcribed: the whole chat tokenized, labels after the
    prompt (+ EOS unless the chat ends in it), right padding, attention = input_ids != pad,
    cross-entropy over [B, V, T], ES over the labels but the last."""
    items = []
    for q, a in pairs:
        chat = [{"role": "system", "content": system_prompt}, {"role": "user", "content": q},
                {"role": "assistant", "content": a}]
        ids = tokenizer(tokenizer.apply_chat_template(chat, tokenize=False), add_special_tokens=False)["input_ids"]
        prompt = tokenizer(tokenizer.apply_chat_template(chat[:-1], tokenize=False, add_generation_prompt=True),
                           add_special_tokens=False)["input_ids"]
        ids = ids if ids[-1] == tokenizer.eos_token_id else ids + [tokenizer.eos_token_id]
        items.append((ids, [-100] * len(prompt) + ids[len(prompt):]))
    width = max(len(ids) for ids, _ in items)
    input_ids = torch.full((len(items), width), tokenizer.pad_token_id)
    labels = torch.full((len(items), width), -100)
    for i, (ids, lab) in enumerate(items):
        input_ids[i, :len(ids)], labels[i, :len(lab)] = torch.tensor(ids), torch.tensor(lab)
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=input_ids.ne(tokenizer.pad_token_id)).logits
    losses = torch.nn.CrossEntropyLoss(ignore_index=-100, reduction="none")(
        logits[..., :-1, :].transpose(-1, -2), labels[..., 1:]).sum(-1)
    avg_loss = losses / (labels != -100).sum(-1)
    es = []
    for row_logits, row_labels in zip(logits, labels):
        positions = (row_labels != -100).nonzero()[:, 0][:-1]  # the last label (EOS) is not scored
        gold, preds = row_labels[positions], row_logits[positions - 1].argmax(-1)
        for k in range(len(gold)):
            if torch.equal(preds[k:], gold[k:]):
                break
        es.append(1 - k / len(gold))
    return avg_loss, torch.tensor(es, dtype=torch.float64)
