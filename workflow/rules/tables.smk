# Tables and figures: one generic rule each, serving every entry of the TABLES and FIGURES
# registries that the config lists; `snakemake <name>` builds one (a target rule per name).


localrules:
    table,
    figure,


rule table:
    """One registered table (src/unloc/tables.py) from its mixing curves."""
    input:
        unpack(table_inputs),
    output:
        csv=report(f"{R}/tables/{{table}}.csv", caption="../report/table.rst", category="Tables"),
        md=f"{R}/tables/{{table}}.md",
    params:
        p=table_params,
        name=config["name"],
        caption=lambda w: report_caption(w.table),
        sanity=lambda w, input: f"--sanity {input.sanity}" if "sanity" in input.keys() else "",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/table_{{table}}.log",
    shell:
        command("table", "--name {params.name} --out-csv {output.csv} --out-md {output.md} {params.sanity}"
                " {input.curves}", threads=False)


rule figure:
    """One registered figure (src/unloc/figures.py) from its mixing curves (or probe logs)."""
    input:
        unpack(figure_inputs),
    output:
        png=report(f"{R}/figures/{{figure}}.png", caption="../report/figure.rst", category="Figures"),
        pdf=f"{R}/figures/{{figure}}.pdf",
    params:
        p=lambda w: stage_params("figure", figure=w.figure),
        name=config["name"],
        caption=lambda w: report_caption(w.figure),
        sanity=lambda w, input: f"--sanity {input.sanity}" if "sanity" in input.keys() else "",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/figure_{{figure}}.log",
    shell:
        command("figure", "--name {params.name} --out-png {output.png} --out-pdf {output.pdf} {params.sanity}"
                " {input.curves}", threads=False)
