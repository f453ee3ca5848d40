rule pretrain:
    """θp: the tiny Llama pretrained here, a named HF checkpoint, or a converted GGUF file."""
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
        command("pretrain", "--out {output.model} --log {output.log}")


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
        p=finetune_params,
        split=lambda w: FINETUNE_SPLIT[w.which],
    threads: threads_of("finetune")
    resources:
        **resources_of("finetune"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/finetune_{{which}}.log",
    shell:
        command("finetune", "--model {input.theta_p} --split {params.split} --out {output.model} --log {output.log}")


rule inject_forget:
    """θo: the forget set learned inside the oracle mask V_tgt only; a sparse delta on θr."""
    input:
        theta_r=f"{R}/theta_r",
        mask=mask_path(INJECTION_MASK, "{seed}"),
        data=DATA_FILES,
    output:
        delta=THETA_O,
        log=f"{R}/theta_o/s{{seed}}/train_log.csv",
    params:
        p=stage_params("inject_forget", train=to_dict(EXPERIMENT.inject), seed=config["seed"], **qa_slice()),
    threads: threads_of("inject_forget")
    resources:
        **resources_of("inject_forget"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/inject_forget_s{{seed}}.log",
    shell:
        command("inject_forget", "--model {input.theta_r} --mask {input.mask} --out {output.delta} --log {output.log}")
