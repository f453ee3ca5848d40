# unloc: Does Localization Inform Unlearning? as cached artifact stages.
# Rules live in workflow/rules/*.smk; all logic lives in src/unloc (called via the `unloc` CLI).
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


# Fail before any job starts on an unknown key, a wrong type or a value outside its enum.
validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/masks.smk"
include: "workflow/rules/unlearn.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/cluster.smk"


rule all:
    input:
        SANITY,
        TABLES,
        FIGURES,
