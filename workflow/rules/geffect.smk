# seeds/001 (G-effect): per forget split of geffect.splits (its dataset and θr: splits.smk), from
# θfull one full-parameter unlearning run per objective with its G-effect probes, each evaluated
# against the split's θr for Table 1 (tables: [geffect_table1]).

# without a geffect section the constraints match nothing, so these rules never run
_SPLITS = "|".join(GEFFECT_SPLITS) or "(?!)"
_OBJECTIVES = "|".join(GEFFECT_OBJECTIVES) or "(?!)"

rule unlearn_all:
    """θu of seeds/001: θfull unlearned with one objective (and the section's regularizer) on every
    parameter, with its G-effect probes: results/{name}/geffect/{split}/{objective}/."""
    input:
        theta_full=f"{R}/theta_full",
        data=lambda w: expand(f"{split_data(w.split)}/{{role}}.jsonl", role=ROLES),
    output:
        model=directory(f"{GEFFECT_RUN}/theta_u"),
        log=f"{GEFFECT_RUN}/train_log.csv",
        probe=f"{GEFFECT_RUN}/probe.csv",
    wildcard_constraints:
        split=_SPLITS,
        objective=_OBJECTIVES,
    params:
        p=geffect_unlearn_params,
        data=lambda w: split_data(w.split),
    threads: threads_of("unlearn_all")
    resources:
        **resources_of("unlearn_all"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/geffect/unlearn_all_{{split}}_{{objective}}.log",
    shell:
        command("unlearn_all", "--model {input.theta_full} --out {output.model} --log {output.log} "
                "--probe {output.probe}", data="{params.data}")

rule evaluate_geffect:
    """`unloc eval` of θr, θfull or a run's θu on a forget split, with the metrics of seeds/001's
    Table 1 only, against the split's θr (θr itself: none)."""
    input:
        model=geffect_model,
        reference=lambda w: [] if w.method == "theta_r" else [f"{GEFFECT}/eval/theta_r/{EVAL_FILE}"],
        data=lambda w: expand(f"{split_data(w.split)}/{{role}}.jsonl", role=ROLES),
    output:
        GEFFECT_EVAL_OUTPUTS,
    wildcard_constraints:
        split=_SPLITS,
        method="|".join(sorted(GEFFECT_METHODS, key=len, reverse=True)),
    params:
        options=lambda w, input: eval_options(input.reference[0] if input.reference else None),
        data=lambda w: split_data(w.split),
        metrics=",".join(GEFFECT_METRICS),
        out=lambda w: GEFFECT_EVAL.format(split=w.split, method=w.method),
    threads: threads_of("evaluate")
    resources:
        **resources_of("evaluate"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/geffect/evaluate_{{split}}_{{method}}.log",
    shell:
        f"{UNLOC} --threads {{threads}} eval {{input.model}} --data {{params.data}} --holdout-split none "
        "--metrics {params.metrics} {params.options} --out {params.out} > {log} 2>&1"


# Tables 2-10 (UWC tuning): per table, split of geffect.uwc and value of its swept setting, one
# full-parameter run (no probes) mixed with θfull; θfull's own point is scored once per split.
_UWC_TABLES = "|".join(sorted({t for t, _, _ in UWC_RUNS}, key=len, reverse=True)) or "(?!)"

rule unlearn_all_uwc:
    """θu of one UWC configuration: θfull unlearned with the table's objective at one value of
    its swept setting: results/{name}/geffect/{split}/uwc/{table}/{value}/."""
    input:
        theta_full=f"{R}/theta_full",
        data=lambda w: expand(f"{split_data(w.split)}/{{role}}.jsonl", role=ROLES),
    output:
        model=directory(f"{UWC_RUN}/theta_u"),
        log=f"{UWC_RUN}/train_log.csv",
    wildcard_constraints:
        split=_SPLITS,
        table=_UWC_TABLES,
        value=r"[0-9.e+-]+",
    params:
        p=uwc_unlearn_params,
        data=lambda w: split_data(w.split),
    # one cluster job per run and its mixing sweep (docs/cluster.md)
    group:
        "sweep"
    threads: threads_of("unlearn_all")
    resources:
        **resources_of("unlearn_all"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/geffect/unlearn_uwc_{{split}}_{{table}}_{{value}}.log",
    shell:
        command("unlearn_all", "--model {input.theta_full} --out {output.model} --log {output.log}",
                data="{params.data}")

rule score_point_uwc:
    """θfull's point (α = 0) of every UWC sweep of a split."""
    input:
        theta_full=f"{R}/theta_full",
        data=lambda w: expand(f"{split_data(w.split)}/{{role}}.jsonl", role=ROLES),
    output:
        UWC_ORIGIN,
    wildcard_constraints:
        split=_SPLITS,
    params:
        p=uwc_mix_params("score_point"),
        data=lambda w: split_data(w.split),
    threads: threads_of("mix_eval")
    resources:
        **resources_of("mix_eval"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/geffect/score_uwc_origin_{{split}}.log",
    shell:
        command("score_point", "--model {input.theta_full} --out {output}", data="{params.data}")

rule mix_all:
    """One UWC sweep θ(α) = θfull + α (θu - θfull): .../uwc/{table}/{value}/curve.csv."""
    input:
        theta_u=f"{UWC_RUN}/theta_u",
        theta_full=f"{R}/theta_full",
        origin=UWC_ORIGIN,
        data=lambda w: expand(f"{split_data(w.split)}/{{role}}.jsonl", role=ROLES),
    output:
        f"{UWC_RUN}/curve.csv",
    wildcard_constraints:
        split=_SPLITS,
        table=_UWC_TABLES,
        value=r"[0-9.e+-]+",
    params:
        p=uwc_mix_params("mix_all"),
        data=lambda w: split_data(w.split),
    group:
        "sweep"
    threads: threads_of("mix_eval")
    resources:
        **resources_of("mix_eval"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/geffect/mix_uwc_{{split}}_{{table}}_{{value}}.log",
    shell:
        command("mix_all", "--model {input.theta_u} --origin {input.origin} --out {output}", data="{params.data}")
