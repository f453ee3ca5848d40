# seeds/004 (WME): per forget split (its dataset and θr: splits.smk) and run (seed of wme.seeds),
# θ_fgt (θp fine-tuned on the forget set), the set-level gradients, each edit of θfull and each
# training baseline from θfull that the configured WME tables report, and every one's `unloc eval`
# against the split's θr: results/{name}/wme/{split}/ (tables: [wme_table1, ...]).

# without a wme section (or WME tables) the constraints match nothing, so these rules never run
_WME_SPLITS = "|".join(WME_SPLITS) or "(?!)"
_EDITS = "|".join(sorted((re.escape(m) for m in EDITS), key=len, reverse=True))
_BASELINES = "|".join(sorted(WME_BASELINES, key=len, reverse=True)) or "(?!)"
_WME_RUN_METHODS = "|".join(filter(None, [_EDITS, _BASELINES]))

rule finetune_forget:
    """θ_fgt of one run: θp (θ_0) fine-tuned on the split's forget set alone."""
    input:
        theta_p=f"{R}/theta_p",
        data=lambda w: expand(f"{split_data(w.split)}/{{role}}.jsonl", role=ROLES),
    output:
        model=directory(THETA_FGT),
        log=f"{WME}/theta_fgt/train_log_s{{seed}}.csv",
    wildcard_constraints:
        split=_WME_SPLITS,
        seed=r"\d+",
    params:
        p=lambda w: stage_params("finetune", train=to_dict(WM.settings.finetune_forget), seed=int(w.seed),
                                 **qa_slice()),
        data=lambda w: split_data(w.split),
    threads: threads_of("finetune")
    resources:
        **resources_of("finetune"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/wme/finetune_forget_{{split}}_s{{seed}}.log",
    shell:
        command("finetune", "--model {input.theta_p} --split forget --out {output.model} --log {output.log}",
                data="{params.data}")

rule gradients:
    """g_f and g_r at θ_0 (θp) or θfull, on the whole forget and retain sets or a seeded share."""
    input:
        model=wme_gradients_model,
        data=lambda w: expand(f"{split_data(w.split)}/{{role}}.jsonl", role=ROLES),
    output:
        WME_GRADIENTS,
    wildcard_constraints:
        split=_WME_SPLITS,
        key="|".join(sorted((re.escape(k) for _, k in WME_GRADIENT_FILES), key=len, reverse=True)) or "(?!)",
    params:
        p=wme_gradients_params,
        data=lambda w: split_data(w.split),
    threads: threads_of("gradients")
    resources:
        **resources_of("gradients"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/wme/gradients_{{split}}_{{key}}.log",
    shell:
        command("gradients", "--model {input.model} --out {output}", data="{params.data}")

rule edit:
    """One edit of one run: θfull + W ⊙ (−(θ_fgt − θp)), W of the method's weighting."""
    input:
        theta_full=f"{R}/theta_full",
        theta_fgt=THETA_FGT,
        theta_0=f"{R}/theta_p",
        gradients=wme_gradients,
    output:
        model=directory(f"{WME_METHOD}/theta_u"),
    wildcard_constraints:
        split=_WME_SPLITS,
        method=_EDITS,
        seed=r"\d+",
    params:
        p=wme_edit_params,
        gradients=lambda w, input: f"--gradients {input.gradients[0]}" if input.gradients else "",
    threads: threads_of("edit")
    resources:
        **resources_of("edit"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/wme/edit_{{split}}_{{method}}_s{{seed}}.log",
    shell:
        command("edit", "--theta-full {input.theta_full} --theta-fgt {input.theta_fgt} --theta-0 {input.theta_0} "
                "{params.gradients} --out {output.model}")

rule unlearn_all_wme:
    """One training baseline of one run: θfull unlearned on every parameter with the baseline's
    objective (and regularizer) in wme.train's loop."""
    input:
        theta_full=f"{R}/theta_full",
        data=lambda w: expand(f"{split_data(w.split)}/{{role}}.jsonl", role=ROLES),
    output:
        model=directory(f"{WME_METHOD}/theta_u"),
        log=f"{WME_METHOD}/train_log.csv",
    wildcard_constraints:
        split=_WME_SPLITS,
        method=_BASELINES,
        seed=r"\d+",
    params:
        p=wme_baseline_params,
        data=lambda w: split_data(w.split),
    threads: threads_of("unlearn_all")
    resources:
        **resources_of("unlearn_all"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/wme/unlearn_{{split}}_{{method}}_s{{seed}}.log",
    shell:
        command("unlearn_all", "--model {input.theta_full} --out {output.model} --log {output.log}",
                data="{params.data}")

rule evaluate_wme:
    """`unloc eval` of an edit or a baseline in one run, with WME's metrics, against the split's θr."""
    input:
        model=wme_eval_model,
        reference=WME_REFERENCE,
        data=lambda w: expand(f"{split_data(w.split)}/{{role}}.jsonl", role=ROLES),
    output:
        [f"{WME_EVAL_RUN}/{f}" for f in (EVAL_FILE, SUMMARY_FILE, ITEMS_FILE)],
    wildcard_constraints:
        split=_WME_SPLITS,
        method=_WME_RUN_METHODS,
        seed=r"\d+",
    params:
        options=lambda w, input: eval_options(input.reference),
        data=lambda w: split_data(w.split),
        metrics=",".join(WME_METRICS),
        out=lambda w: WME_EVAL_RUN.format(split=w.split, method=w.method, seed=w.seed),
    threads: threads_of("evaluate")
    resources:
        **resources_of("evaluate"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/wme/evaluate_{{split}}_{{method}}_s{{seed}}.log",
    shell:
        f"{UNLOC} --threads {{threads}} eval {{input.model}} --data {{params.data}} --holdout-split none "
        "--metrics {params.metrics} {params.options} --out {params.out} > {log} 2>&1"

rule evaluate_wme_reference:
    """`unloc eval` of θfull (Full) or the split's θr (GT) against θr's own evaluation without a
    reference (theta_r), which every FQ of the split reads."""
    input:
        model=wme_eval_model,
        reference=lambda w: [] if w.method == "theta_r" else [WME_REFERENCE.format(split=w.split)],
        data=lambda w: expand(f"{split_data(w.split)}/{{role}}.jsonl", role=ROLES),
    output:
        [f"{WME_EVAL_REF}/{f}" for f in (EVAL_FILE, SUMMARY_FILE, ITEMS_FILE)],
    wildcard_constraints:
        split=_WME_SPLITS,
        method="full|gt|theta_r",
    params:
        options=lambda w, input: eval_options(input.reference[0] if input.reference else None),
        data=lambda w: split_data(w.split),
        metrics=",".join(WME_METRICS),
        out=lambda w: WME_EVAL_REF.format(split=w.split, method=w.method),
    threads: threads_of("evaluate")
    resources:
        **resources_of("evaluate"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/wme/evaluate_{{split}}_{{method}}.log",
    shell:
        f"{UNLOC} --threads {{threads}} eval {{input.model}} --data {{params.data}} --holdout-split none "
        "--metrics {params.metrics} {params.options} --out {params.out} > {log} 2>&1"
