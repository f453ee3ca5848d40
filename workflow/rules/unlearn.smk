UNLEARN = f"{R}/unlearn/{{objective}}/{{scenario}}/s{{seed}}"
MASK_OF_SCENARIO = {"oracle": "target", "random": "random"}
CURVES = expand(
    f"{R}/mix/{{objective}}/{{scenario}}/s{{seed}}/curve.csv",
    objective=config["unlearn"]["objectives"], scenario=config["unlearn"]["scenarios"], seed=SEEDS,
)


def unlearn_params(w):
    """Only this objective's settings: changing unlearn.npo.lr reruns the NPO jobs alone."""
    u = config["unlearn"]
    return stage_params(
        "unlearn", objective=w.objective, hparams=u[w.objective], train=u["train"],
        eval_batch_size=u["eval_batch_size"], seed=config["seed"], **run_slice(),
    )


rule unlearn:
    """θu: unlearning from θo restricted to V_tgt (oracle) or V_rdm (random); a delta on θo."""
    input:
        theta_o=f"{R}/theta_o/s{{seed}}/delta.safetensors",
        theta_r=f"{R}/theta_r",
        mask=lambda w: f"{R}/masks/s{w.seed}/{MASK_OF_SCENARIO[w.scenario]}.safetensors",
        data=DATA_FILES,
    output:
        delta=f"{UNLEARN}/delta.safetensors",
        log=f"{UNLEARN}/train_log.csv",
    wildcard_constraints:
        objective="wga|npo|dpo|rmu",
        scenario="oracle|random",
    params:
        p=unlearn_params,
    # one cluster job per unlearning run and its mixing sweep (docs/cluster.md)
    group:
        "sweep"
    threads: threads_of("unlearn")
    resources:
        **resources_of("unlearn"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/unlearn_{{objective}}_{{scenario}}_s{{seed}}.log",
    shell:
        "{LAUNCH[unlearn]} --threads {threads} unlearn --params {params.p:q} --model {input.theta_o}"
        " --mask {input.mask} --data {DATA} --out {output.delta} --log {output.log} > {log} 2>&1"
