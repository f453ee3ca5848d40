TABLES = ["results/tables/table2.csv", "results/tables/table2.md"]
FIGURES = expand("results/figures/{kind}.{ext}", kind=["fs_rs", "mu_fq"], ext=["png", "pdf"])


localrules:
    table2,
    figure,


rule table2:
    """Table 2: Random vs Oracle, AUES and MU95 with the App. D tests, CI and TOST."""
    input:
        CURVES,
    output:
        csv=report("results/tables/table2.csv", caption="../report/table2.rst", category="Tables"),
        md="results/tables/table2.md",
    params:
        p=stage_params("table2", **config["stats"]),
        model=config["name"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/table2.log",
    shell:
        "{UNLOC} table2 --params {params.p:q} --model {params.model} --out-csv {output.csv} --out-md {output.md}"
        " {input} > {log} 2>&1"


rule figure:
    """FS-RS (AUES) and MU-FQ (MU95) curves, Oracle vs Random, every seed."""
    input:
        CURVES,
    output:
        png=report("results/figures/{kind}.png", caption="../report/{kind}.rst", category="Figures"),
        pdf="results/figures/{kind}.pdf",
    wildcard_constraints:
        kind="fs_rs|mu_fq",
    params:
        model=config["name"],
        version=lambda w: STAGES["figure"].version,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/figure_{{kind}}.log",
    shell:
        "{UNLOC} figure --kind {wildcards.kind} --model {params.model} --out-png {output.png} --out-pdf {output.pdf}"
        " {input} > {log} 2>&1"
