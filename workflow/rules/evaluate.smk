SANITY = f"{R}/sanity.csv"


rule es:
    """Mean teacher-forced ES of one checkpoint on forget and retain."""
    input:
        model=lambda w: checkpoint_artifacts(w.ckpt),
        data=DATA_FILES,
    output:
        f"{R}/es/{{ckpt}}.json",
    params:
        p=stage_params("es", **run_slice(), **config["eval"]),
    threads: threads_of("es")
    resources:
        **resources_of("es"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/es_{{ckpt}}.log",
    shell:
        "{LAUNCH[es]} --threads {threads} es --params {params.p:q} --model {input.model[0]}"
        " --data {DATA}"
        " --out {output} > {log} 2>&1"


def sanity_results():
    return {c if not c.startswith("theta_o_s") else f"theta_o[s{c[9:]}]": f"{R}/es/{c}.json" for c in CHECKPOINTS}


localrules:
    sanity,


rule sanity:
    """results/{name}/sanity.csv: does θo memorize the forget set, and θr not?"""
    input:
        list(sanity_results().values()),
    output:
        SANITY,
    params:
        results=" ".join(f"--result {n}={p}" for n, p in sanity_results().items()),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/sanity.log",
    shell:
        "{UNLOC} sanity {params.results} --out {output} > {log} 2>&1"


def mix_params():
    return stage_params("mix_eval", **run_slice(), **config["mix"], es_convention=config["eval"]["es_convention"])


rule reference_stats:
    """θr's forget truth ratios, once: every FQ is a KS test against them."""
    input:
        theta_r=f"{R}/theta_r",
        data=DATA_FILES,
    output:
        f"{R}/eval/theta_r_forget_truth_ratio.safetensors",
    params:
        p=stage_params("reference_stats", **run_slice(), **config["mix"]),
    threads: threads_of("reference_stats")
    resources:
        **resources_of("reference_stats"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/reference_stats.log",
    shell:
        "{LAUNCH[reference_stats]} --threads {threads} reference-stats --params {params.p:q}"
        " --model {input.theta_r} --data {DATA}"
        " --out {output} > {log} 2>&1"


rule mix_eval:
    """One model-mixing sweep: results/{name}/mix/{objective}/{scenario}/s{seed}/curve.csv."""
    input:
        theta_u=f"{UNLEARN}/delta.safetensors",
        theta_o=f"{R}/theta_o/s{{seed}}/delta.safetensors",
        theta_r=f"{R}/theta_r",
        reference=rules.reference_stats.output[0],
        data=DATA_FILES,
    output:
        f"{R}/mix/{{objective}}/{{scenario}}/s{{seed}}/curve.csv",
    wildcard_constraints:
        objective="wga|npo|dpo|rmu",
        scenario="oracle|random",
    params:
        p=mix_params(),
    # one cluster job per unlearning run and its mixing sweep (docs/cluster.md)
    group:
        "sweep"
    threads: threads_of("mix_eval")
    resources:
        **resources_of("mix_eval"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/mix_eval_{{objective}}_{{scenario}}_s{{seed}}.log",
    shell:
        "{LAUNCH[mix_eval]} --threads {threads} mix-eval --params {params.p:q} --model {input.theta_u}"
        " --reference {input.reference} --data {DATA} --out {output} > {log} 2>&1"
