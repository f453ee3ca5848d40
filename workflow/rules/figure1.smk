# seeds/000 Figure 1: θo of one mask seed unlearned by L2 matching of θr's MLP outputs inside its
# V_tgt (Oracle) and inside Random A/B/C (V_rdm drawn outside that V_tgt with seeds of their own),
# each with its mixing sweep. Built when `figures` lists figure1 (settings: config `figure1`).
localrules:
    localize_figure1,


rule localize_figure1:
    """Random A/B/C: V_rdm drawn with seed {seed} outside the V_tgt of θo's seed."""
    input:
        model=f"{R}/theta_p",
        mask_oracle=lambda w: mask_path("oracle", FIGURE1.seed),
    output:
        FIGURE1_MASK,
    params:
        p=figure1_localize_params,
        masks=localize_mask_args,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/figure1/localize_random_s{{seed}}.log",
    shell:
        command("localize", "--model {input.model} {params.masks} --out {output}", threads=False)


rule unlearn_figure1:
    """θo unlearned by Figure 1's objective inside the Oracle region or one of Random A/B/C; a
    delta on θo. The objective matches θr's activations: θr is its --target."""
    input:
        theta_o=lambda w: THETA_O.format(seed=FIGURE1.seed),
        theta_r=f"{R}/theta_r",
        mask=figure1_unlearn_mask,
        data=DATA_FILES,
    output:
        delta=f"{FIGURE1_UNLEARN}/delta.safetensors",
        log=f"{FIGURE1_UNLEARN}/train_log.csv",
    wildcard_constraints:
        localizer="oracle|random",
    params:
        p=figure1_unlearn_params,
    group:
        "sweep"
    threads: threads_of("unlearn")
    resources:
        **resources_of("unlearn"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/figure1/unlearn_{{localizer}}_s{{seed}}.log",
    shell:
        command("unlearn", "--model {input.theta_o} --mask {input.mask} --target {input.theta_r} "
                "--out {output.delta} --log {output.log}")


rule mix_eval_figure1:
    """Figure 1's mixing sweep θ(α) = (1-α)θo + αθu of one run."""
    input:
        theta_u=f"{FIGURE1_UNLEARN}/delta.safetensors",
        theta_o=lambda w: THETA_O.format(seed=FIGURE1.seed),
        theta_r=f"{R}/theta_r",
        reference=REFERENCE,
        origin=lambda w: THETA_O_POINT.format(seed=FIGURE1.seed),
        data=DATA_FILES,
    output:
        FIGURE1_CURVE,
    wildcard_constraints:
        localizer="oracle|random",
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
        f"{LOGS}/figure1/mix_eval_{{localizer}}_s{{seed}}.log",
    shell:
        command("mix_eval", "--model {input.theta_u} --reference {input.reference} --origin {input.origin} --out {output}")
