def pretrain_params():
    model = config["model"]
    if model["source"] == "hf":
        # A named checkpoint is only resolved: training settings do not touch it.
        return stage_params("pretrain", model={"source": "hf", "name_or_path": model["name_or_path"]})
    return stage_params("pretrain", model=model, train=config["pretrain"], seed=config["seed"])


rule pretrain:
    input:
        DATA_FILES,
    output:
        model=directory(f"{R}/theta_p"),
        log=f"{R}/train_logs/pretrain.csv",
    params:
        p=pretrain_params(),
    threads: threads_of("pretrain")
    resources:
        **resources_of("pretrain"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/pretrain.log",
    shell:
        "{LAUNCH[pretrain]} --threads {threads} pretrain --params {params.p:q} --data {DATA}"
        " --out {output.model} --log {output.log} > {log} 2>&1"


FINETUNE_SPLIT = {"r": "retain", "full": "full"}  # θr: retain set; θfull: all of D (Section 3)


rule finetune:
    """θr (retain) and θfull (full): full-parameter fine-tuning of θp."""
    input:
        theta_p=f"{R}/theta_p",
        data=DATA_FILES,
    output:
        model=directory(f"{R}/theta_{{which}}"),
        log=f"{R}/train_logs/finetune_{{which}}.csv",
    wildcard_constraints:
        which="r|full",
    params:
        p=lambda w: stage_params(
            "finetune", train=config[f"finetune_{FINETUNE_SPLIT[w.which]}"], seed=config["seed"], **run_slice()
        ),
        split=lambda w: FINETUNE_SPLIT[w.which],
    threads: threads_of("finetune")
    resources:
        **resources_of("finetune"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/finetune_{{which}}.log",
    shell:
        "{LAUNCH[finetune]} --threads {threads} finetune --params {params.p:q} --model {input.theta_p}"
        " --data {DATA} --split {params.split} --out {output.model} --log {output.log} > {log} 2>&1"


rule inject_forget:
    """θo: the forget set learned inside V_tgt only; a sparse delta on θr."""
    input:
        theta_r=f"{R}/theta_r",
        mask=f"{R}/masks/s{{seed}}/target.safetensors",
        data=DATA_FILES,
    output:
        delta=f"{R}/theta_o/s{{seed}}/delta.safetensors",
        log=f"{R}/theta_o/s{{seed}}/train_log.csv",
    params:
        p=stage_params("inject_forget", train=config["inject"], seed=config["seed"], **run_slice()),
    threads: threads_of("inject_forget")
    resources:
        **resources_of("inject_forget"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/inject_forget_s{{seed}}.log",
    shell:
        "{LAUNCH[inject_forget]} --threads {threads} inject --params {params.p:q} --model {input.theta_r}"
        " --mask {input.mask} --data {DATA} --out {output.delta} --log {output.log} > {log} 2>&1"
