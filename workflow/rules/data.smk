# Cheap and I/O-bound: runs where Snakemake runs, never as a cluster job.
localrules:
    prepare_data,


rule prepare_data:
    """Every dataset role as JSON Lines: minitofu generated, or TOFU read."""
    output:
        DATA_FILES,
    params:
        p=stage_params("prepare_data", data=config["data"]),
    conda:
        CONDA_ENV
    log:
        f"results/data/{config['data']['name']}.log",
    shell:
        command("prepare_data", f"--out {DATA}", threads=False)
