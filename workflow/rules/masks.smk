# Cheap and I/O-bound: runs where Snakemake runs, never as a cluster job.
localrules:
    localize,


rule localize:
    """One localizer's mask for one seed: results/{name}/masks/{localizer}/s{seed}/mask.safetensors."""
    input:
        unpack(localize_inputs),
    output:
        mask_path("{localizer}", "{seed}"),
    params:
        p=localize_params,
        masks=localize_mask_args,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/localize_{{localizer}}_s{{seed}}.log",
    shell:
        command("localize", "--model {input.model} {params.masks} --out {output}", threads=False)
