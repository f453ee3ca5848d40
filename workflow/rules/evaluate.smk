SANITY = f"{R}/sanity.csv"


rule es:
    """Mean teacher-forced ES of one checkpoint on forget and retain."""
    input:
        model=lambda w: checkpoint_artifacts(w.ckpt),
        data=DATA_FILES,
    output:
        f"{R}/es/{{ckpt}}.json",
    params:
        p=stage_params("es", **run_slice(), **config["eval"]),
    threads: 2
    log:
        f"{LOGS}/es_{{ckpt}}.log",
    shell:
        "{UNLOC} --threads {threads} es --params {params.p:q} --model {input.model[0]} --data {DATA}"
        " --out {output} > {log} 2>&1"


def sanity_results():
    return {c if not c.startswith("theta_o_s") else f"theta_o[s{c[9:]}]": f"{R}/es/{c}.json" for c in CHECKPOINTS}


rule sanity:
    """results/{name}/sanity.csv: does θo memorize the forget set, and θr not?"""
    input:
        list(sanity_results().values()),
    output:
        SANITY,
    params:
        results=" ".join(f"--result {n}={p}" for n, p in sanity_results().items()),
    log:
        f"{LOGS}/sanity.log",
    shell:
        "{UNLOC} sanity {params.results} --out {output} > {log} 2>&1"
