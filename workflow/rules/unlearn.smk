rule unlearn:
    """θu: unlearning from θo restricted to one localizer's mask; a delta on θo."""
    input:
        theta_o=THETA_O,
        theta_r=f"{R}/theta_r",
        mask=mask_path("{localizer}", "{seed}"),
        data=DATA_FILES,
    output:
        delta=f"{UNLEARN}/delta.safetensors",
        log=f"{UNLEARN}/train_log.csv",
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
        f"{LOGS}/unlearn_{{objective}}_{{localizer}}_s{{seed}}.log",
    shell:
        command("unlearn", "--model {input.theta_o} --mask {input.mask} --out {output.delta} --log {output.log}")


rule unlearn_original:
    """θu of seeds/000 Section 3: unlearning θfull with a table's objective inside one localizer's
    mask (of the table's ratio); a delta on θfull."""
    input:
        theta_full=f"{R}/theta_full",
        mask=original_unlearn_mask,
        data=DATA_FILES,
    output:
        delta=f"{ORIGINAL_UNLEARN}/delta.safetensors",
        log=f"{ORIGINAL_UNLEARN}/train_log.csv",
    wildcard_constraints:
        table=TABLES.pattern(lambda spec: spec.scenario == ORIGINAL),
    params:
        p=original_unlearn_params,
    group:
        "sweep"
    threads: threads_of("unlearn")
    resources:
        **resources_of("unlearn"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/original/unlearn_{{table}}_{{localizer}}_s{{seed}}.log",
    shell:
        command("unlearn", "--model {input.theta_full} --mask {input.mask} --out {output.delta} --log {output.log}")
