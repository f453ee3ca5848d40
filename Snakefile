# unloc: Does Localization Inform Unlearning? as cached artifact stages.
# Rules live in workflow/rules/*.smk; all logic lives in src/unloc (called via the `unloc` CLI).
import os

from snakemake.utils import min_version, validate

min_version("9.0")


# The defaults: config.yaml of this checkout, whatever the working directory. A config given with
# --configfile is merged over it key by key, so it holds only what differs.
configfile: os.path.join(workflow.basedir, "config.yaml")


# Fail before any job starts on an unknown key, a wrong type or a value outside its enum;
# common.smk then checks every settings block against its dataclass (src/unloc/config.py).
validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/locks.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/masks.smk"
include: "workflow/rules/unlearn.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figure1.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/geffect.smk"
include: "workflow/rules/wme.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/cluster.smk"
include: "workflow/rules/targets.smk"


# The default target (`snakemake`): every artifact of the configured experiment, not only the
# tables, so a plain rerun rebuilds any that is missing (a job killed or failed after its
# descendants were built). It must stay in this file: a default_target set in an include is undone.
rule all:
    input:
        FINAL_ARTIFACTS,
        EXPERIMENT_ARTIFACTS,
    default_target: True
