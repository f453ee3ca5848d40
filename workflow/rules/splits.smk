# The forget splits other than data.forget_split that seeds/001 (geffect.splits) and seeds/004
# (wme.splits) run on: each its dataset roles and its θr. data.forget_split reuses the
# experiment's own data and θr (split_data, split_theta_r).

# without such splits the constraint matches nothing, so these rules never run
_DATA_SPLITS = "|".join(DATA_SPLITS) or "(?!)"

rule prepare_data_split:
    """A forget split's dataset roles (every role but forget, retain and their perturbed sets as
    the experiment's)."""
    output:
        expand(f"{DATA}/splits/{{{{split}}}}/{{role}}.jsonl", role=ROLES),
    wildcard_constraints:
        split=_DATA_SPLITS,
    params:
        p=lambda w: stage_params("prepare_data", data={**config["data"], "forget_split": w.split}),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/splits/prepare_data_{{split}}.log",
    shell:
        command("prepare_data", f"--out {DATA}/splits/{{wildcards.split}}", threads=False)

rule finetune_split:
    """θr of a forget split: θp fine-tuned on that split's retain set."""
    input:
        theta_p=f"{R}/theta_p",
        data=lambda w: expand(f"{split_data(w.split)}/{{role}}.jsonl", role=ROLES),
    output:
        model=directory(f"{R}/splits/{{split}}/theta_r"),
        log=f"{R}/splits/{{split}}/train_logs/finetune_r.csv",
    wildcard_constraints:
        split=_DATA_SPLITS,
    params:
        p=finetune_params_of("r"),
        data=lambda w: split_data(w.split),
    threads: threads_of("finetune")
    resources:
        **resources_of("finetune"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/splits/finetune_r_{{split}}.log",
    shell:
        command("finetune", "--model {input.theta_p} --split retain --out {output.model} --log {output.log}",
                data="{params.data}")
