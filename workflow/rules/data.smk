# Cheap and I/O-bound: runs where Snakemake runs, never as a cluster job.
localrules:
    prepare_data,


rule prepare_data:
    output:
        DATA_FILES,
    params:
        p=stage_params("prepare_data", data=config["data"]),
    conda:
        CONDA_ENV
    log:
        f"results/data/{config['data']['name']}.log",
    shell:
        "{UNLOC} prepare-data --params {params.p:q} --out {DATA} > {log} 2>&1"
