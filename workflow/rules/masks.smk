# Cheap and I/O-bound: runs where Snakemake runs, never as a cluster job.
localrules:
    make_mask,


rule make_mask:
    """V_tgt and V_rdm for one mask seed (shapes from θp's config)."""
    input:
        f"{R}/theta_p",
    output:
        target=f"{R}/masks/s{{seed}}/target.safetensors",
        random=f"{R}/masks/s{{seed}}/random.safetensors",
    params:
        p=stage_params("make_mask", ratio=config["masks"]["ratio"]),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/make_mask_s{{seed}}.log",
    shell:
        "{UNLOC} make-mask --params {params.p:q} --model {input} --seed {wildcards.seed}"
        " --out-target {output.target} --out-random {output.random} > {log} 2>&1"
