rule es:
    """Mean teacher-forced ES of one checkpoint on forget and retain."""
    input:
        model=lambda w: checkpoint_artifacts(w.ckpt),
        data=DATA_FILES,
    output:
        f"{R}/es/{{ckpt}}.json",
    params:
        p=stage_params("es", eval=to_dict(EXPERIMENT.eval), **qa_slice()),
    threads: threads_of("es")
    resources:
        **resources_of("es"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/es_{{ckpt}}.log",
    shell:
        command("es", "--model {input.model[0]} --out {output}")


localrules:
    sanity,


rule sanity:
    """results/{name}/sanity.csv: did each θo memorize the forget set and keep the retain set?"""
    input:
        list(sanity_results().values()),
    output:
        SANITY,
    params:
        p=stage_params("sanity", sanity=to_dict(EXPERIMENT.sanity)),
        results=" ".join(f"--result {n}={p}" for n, p in sanity_results().items()),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/sanity.log",
    shell:
        command("sanity", "{params.results} --out {output}", threads=False)


rule reference_stats:
    """θr's forget truth ratios, once: every FQ is a KS test against them."""
    input:
        theta_r=f"{R}/theta_r",
        data=DATA_FILES,
    output:
        REFERENCE,
    params:
        # only what it reads: the α grid or the generation length do not touch θr's truth ratios
        p=stage_params("reference_stats", batch_size=EXPERIMENT.mix.batch_size, **qa_slice()),
    threads: threads_of("reference_stats")
    resources:
        **resources_of("reference_stats"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/reference_stats.log",
    shell:
        command("reference_stats", "--model {input.theta_r} --out {output}")


rule score_point:
    """θo's row of every curve metric (α = 0), scored once per seed for all of its sweeps."""
    input:
        theta_o=THETA_O,
        theta_r=f"{R}/theta_r",
        reference=REFERENCE,
        data=DATA_FILES,
    output:
        THETA_O_POINT,
    params:
        p=mix_params("score_point"),
    threads: threads_of("mix_eval")
    resources:
        **resources_of("mix_eval"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/score_point_theta_o_s{{seed}}.log",
    shell:
        command("score_point", "--model {input.theta_o} --reference {input.reference} --out {output}")


rule mix_eval:
    """One model-mixing sweep: results/{name}/mix/{objective}/{localizer}/s{seed}/curve.csv."""
    input:
        theta_u=f"{UNLEARN}/delta.safetensors",
        theta_o=THETA_O,
        theta_r=f"{R}/theta_r",
        reference=REFERENCE,
        origin=THETA_O_POINT,
        data=DATA_FILES,
    output:
        CURVE,
    params:
        p=mix_params("mix_eval"),
    # one cluster job per unlearning run and its mixing sweep (docs/cluster.md)
    group:
        "sweep"
    threads: threads_of("mix_eval")
    resources:
        **resources_of("mix_eval"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/mix_eval_{{objective}}_{{localizer}}_s{{seed}}.log",
    shell:
        command("mix_eval", "--model {input.theta_u} --reference {input.reference} --origin {input.origin} --out {output}")


rule score_point_full:
    """θfull's row of every curve metric (α = 0), once for all of Section 3's sweeps."""
    input:
        theta_full=f"{R}/theta_full",
        reference=REFERENCE,
        data=DATA_FILES,
    output:
        THETA_FULL_POINT,
    params:
        p=mix_params("score_point"),
    threads: threads_of("mix_eval")
    resources:
        **resources_of("mix_eval"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/original/score_point_theta_full.log",
    shell:
        command("score_point", "--model {input.theta_full} --reference {input.reference} --out {output}")


rule mix_eval_original:
    """A Section 3 mixing sweep θ(α) = (1-α)θfull + αθu:
    results/{name}/original/mix/{table}/{localizer}/s{seed}/curve.csv."""
    input:
        theta_u=f"{ORIGINAL_UNLEARN}/delta.safetensors",
        theta_full=f"{R}/theta_full",
        reference=REFERENCE,
        origin=THETA_FULL_POINT,
        data=DATA_FILES,
    output:
        ORIGINAL_CURVE,
    wildcard_constraints:
        table=TABLES.pattern(lambda spec: spec.scenario == ORIGINAL),
    params:
        p=mix_params("mix_eval"),
    group:
        "sweep"
    threads: threads_of("mix_eval")
    resources:
        **resources_of("mix_eval"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/original/mix_eval_{{table}}_{{localizer}}_s{{seed}}.log",
    shell:
        command("mix_eval", "--model {input.theta_u} --reference {input.reference} --origin {input.origin} --out {output}")


rule holdout_data:
    """The dataset's holdout QA (authors no model saw): the MIA's non-members in `evaluate`."""
    output:
        HOLDOUT,
    params:
        p=stage_params("holdout_data", data=config["data"]),
    conda:
        CONDA_ENV
    log:
        f"results/data/{config['data']['name']}.holdout.log",
    shell:
        command("holdout_data", "--out {output}", threads=False)


rule evaluate:
    """`unloc eval` of one named checkpoint: open-unlearning's TOFU_EVAL.json, TOFU_SUMMARY.json and
    a per-item CSV in results/{name}/eval/{ckpt}/, against θr's for FQ and privleak."""
    input:
        model=lambda w: EVAL_CHECKPOINTS[w.ckpt],
        reference=lambda w: [] if w.ckpt == "theta_r" else [EVAL_REFERENCE],
        data=DATA_FILES,
        holdout=[HOLDOUT] if HAS_HOLDOUT else [],
    output:
        EVAL_OUTPUTS,
    wildcard_constraints:
        ckpt="|".join(sorted(EVAL_CHECKPOINTS, key=len, reverse=True)),
    params:
        options=evaluate_options,
        out=lambda w: EVAL_DIR.format(ckpt=w.ckpt),
    threads: threads_of("evaluate")
    resources:
        **resources_of("evaluate"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/evaluate_{{ckpt}}.log",
    shell:
        f"{UNLOC} --threads {{threads}} eval {{input.model[0]}} --data {DATA} {{params.options}} "
        "--out {params.out} > {log} 2>&1"
