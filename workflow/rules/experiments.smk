# Tables that run in an experiment of their own (Table 6: seeds/000 App. E.2, Section 4 on PII
# records): this same workflow as a Snakemake module, on the config check_config derived for it
# (src/unloc/config.py: experiment_config), writing results/{name}/<experiment>/. Its rules are
# this workflow's, prefixed <experiment>_; its config lists no such table, so it nests no further.

# A module's name is a literal of the Snakefile: one declaration per experiment a table names.
EXPERIMENT_MODULES = {"pii"}
for _spec in TABLES.specs():
    if _spec.experiment and _spec.experiment not in EXPERIMENT_MODULES:
        raise WorkflowError(f"table {_spec.name} runs in experiment {_spec.experiment!r}, which "
                            f"workflow/rules/experiments.smk declares no module for")


def experiment_config_of(experiment):
    """The derived config of the configured table that runs in ``experiment``; None if none does."""
    return next((c for t, c in EXPERIMENT.experiment_configs.items() if TABLES[t].experiment == experiment), None)


if experiment_config_of("pii") is not None:

    module pii:
        snakefile:
            "../../Snakefile"
        config:
            experiment_config_of("pii")

    use rule * from pii as pii_*


EXPERIMENT_ARTIFACTS = []  # every artifact of every such experiment, for `rule all`
EXPERIMENT_TABLE_INPUTS = {}  # {table: its table rule's inputs: its experiment's curves and sanity verdict}
for _table, _sub in EXPERIMENT.experiment_configs.items():
    _prefix = TABLES[_table].experiment
    EXPERIMENT_ARTIFACTS += getattr(rules, f"{_prefix}_all").input
    EXPERIMENT_TABLE_INPUTS[_table] = {
        "curves": expand(getattr(rules, f"{_prefix}_mix_eval").output[0], objective=_sub["unlearn"]["objectives"],
                         localizer=_sub["unlearn"]["localizers"], seed=_sub["masks"]["seeds"]),
        "sanity": getattr(rules, f"{_prefix}_sanity").output[0],
    }
