# Targets: rules that only ask for files (no command, so no conda environment), run by name:
# `snakemake table2`, `snakemake all_tables`, `snakemake evaluate_all`. `all`, the default, is in
# the Snakefile: Snakemake takes the default target from the main file only, never an include.

# One target per configured table and figure (`snakemake table2`), and all of them
# (`snakemake all_tables`): each asks for its files, which ask for what they rest on.
for _name, _files in [*((t, expand(f"{R}/tables/{t}.{{ext}}", ext=["csv", "md"])) for t in EXPERIMENT.tables),
                      *((f, expand(f"{R}/figures/{f}.{{ext}}", ext=["png", "pdf"])) for f in EXPERIMENT.figures)]:

    rule:
        name:
            _name
        input:
            _files,


rule all_tables:
    input:
        TABLE_FILES,
        FIGURE_FILES,


# `unloc eval` of every named checkpoint (θp, θr, θfull, each θo and θu): results/{name}/eval/{ckpt}/;
# not part of `all`, which no table reads it for
rule evaluate_all:
    input:
        expand(EVAL_OUTPUTS, ckpt=list(EVAL_CHECKPOINTS)),
