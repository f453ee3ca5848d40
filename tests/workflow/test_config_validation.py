"""The config is validated against the schema before any job starts."""

import copy
import json
import shlex
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from helpers import REPO, load_config, snakemake, write_config

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
CONFIGS = sorted(p.relative_to(REPO).as_posix() for p in [REPO / "config.yaml", *(REPO / "config").glob("*.yaml")])


@pytest.mark.parametrize("name", CONFIGS)
def test_every_shipped_config_is_valid(name):
    validate(yaml.safe_load((REPO / name).read_text()), SCHEMA)


@pytest.mark.parametrize("mutate,key,message", [
    (lambda c: c["inject"].update(lrr=1e-3), "inject", "'lrr' was unexpected"),
    (lambda c: c["masks"].update(seed=[1]), "masks", "'seed' was unexpected"),
    (lambda c: c.update(unlearning={}), "", "'unlearning' was unexpected"),
    (lambda c: c["inject"].update(lr="fast"), "['inject']['lr']", "'fast' is not of type 'number'"),
    (lambda c: c["masks"].update(ratio=2), "['masks']['ratio']", "2 is greater than the maximum of 0.5"),
    (lambda c: c["eval"].update(es_convention="mine"), "['eval']['es_convention']",
     "'mine' is not one of ['paper', 'open_unlearning']"),
    (lambda c: c["pretrain"].update(lambda_retain=2), "pretrain", "'lambda_retain' was unexpected"),
    (lambda c: c["data"]["tofu"].update(retain_items="first5"), "['data']['tofu']['retain_items']",
     "'first5' is not of type 'integer', 'null'"),
    (lambda c: c["data"]["tofu"].update(utility_items=0), "['data']['tofu']['utility_items']",
     "0 is less than the minimum of 1"),
])
def test_bad_values_fail_naming_the_key(mutate, key, message):
    config = load_config()
    mutate(config)
    with pytest.raises(Exception) as err:
        validate(copy.deepcopy(config), SCHEMA)
    text = str(err.value)
    assert message in text
    assert f"On instance{key}" in text or f"On instance['{key}']" in text


def test_snakemake_refuses_a_typo_before_running_anything(tmp_path):
    config = load_config()
    config["inject"]["lrr"] = 1e-3
    write_config(tmp_path, config)
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "'lrr' was unexpected" in output and "On instance['inject']" in output
    assert not (Path(tmp_path) / "results").exists()


MODEL_STAGES = {"pretrain", "finetune", "inject", "unlearn", "es", "reference-stats", "mix-eval"}


def planned_params(workdir, config_name) -> dict[str, list[dict]]:
    """{CLI subcommand: the --params of each planned job} of a dry run of ``config_name``."""
    path = write_config(workdir, load_config(config_name))
    out = snakemake(workdir, "-n", "-p", "--configfile", str(path), "--", "all").stdout
    params: dict[str, list[dict]] = {}
    for line in out.splitlines():
        if "unloc.cli" in line and "--params" in line:
            words = shlex.split(line[line.index("unloc.cli"):])
            at = words.index("--params")
            params.setdefault(words[at - 1], []).append(json.loads(words[at + 1]))
    return params


@pytest.mark.parametrize("config_name,precision", [("config/quick.yaml", "fp32"), ("config/llama8b.yaml", "bf16")])
def test_precision_is_a_param_of_exactly_the_stages_that_run_a_model(tmp_path, config_name, precision):
    """So changing it reruns every model stage and nothing else (the params trigger)."""
    params = planned_params(tmp_path, config_name)
    assert MODEL_STAGES <= params.keys()
    for subcommand, jobs in params.items():
        for p in jobs:
            assert p.get("precision") == (precision if subcommand in MODEL_STAGES else None), subcommand
