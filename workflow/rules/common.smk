# Paths and the per-stage parameter slices every rule passes to the `unloc` CLI.
import json
import os
import re
import sys

# Stages run as `python -m unloc.cli` from this checkout's src/, in the venv (where the project
# is also installed) and in the conda environment of envs/unloc.yaml alike: that file holds only
# the dependencies, because Snakemake deploys a copy of it, where a relative `-e ..` means nothing.
SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))
CONDA_ENV = os.path.join(workflow.basedir, "envs", "unloc.yaml")

from unloc.data import ROLES
from unloc.stages import STAGES

R = f"results/{config['name']}"
DATA = f"results/data/{config['data']['name']}"
DATA_FILES = expand(DATA + "/{role}.jsonl", role=ROLES)
SEEDS = config["masks"]["seeds"]
LOGS = f"{R}/logs"
# Where to run is not part of any result, so it is a CLI flag and not a param.
UNLOC = f"python -m unloc.cli --device {config['device']}"

wildcard_constraints:
    seed=r"\d+",


def stage_params(stage, **slices):
    """The config slice a rule depends on, plus its stage's version, as one JSON string.

    Snakemake's params trigger compares these strings, so a changed value reruns exactly the
    rules whose slice contains it (and their descendants). Every stage that runs a model also
    depends on the precision its forward passes run in and its checkpoints are written in.
    """
    if STAGES[stage].runs_model:
        slices = {**slices, "precision": config["precision"]}
    return json.dumps({"version": STAGES[stage].version, **slices}, sort_keys=True)


def run_slice():
    """What every model stage needs to turn records into tokens."""
    return {"max_length": config["model"]["max_length"], "system_prompt": config["model"]["system_prompt"]}


CHECKPOINTS = ["theta_p", "theta_r"] + [f"theta_o_s{s}" for s in SEEDS]


def checkpoint_artifacts(ckpt):
    """Artifact of a named checkpoint, then what loading it needs (a delta needs its parents)."""
    if ckpt in ("theta_p", "theta_r"):
        return [f"{R}/{ckpt}"]
    m = re.fullmatch(r"theta_o_s(\d+)", ckpt)
    if m:
        return [f"{R}/theta_o/s{m[1]}/delta.safetensors", f"{R}/theta_r"]
    raise ValueError(f"unknown checkpoint {ckpt!r}: expected one of {', '.join(CHECKPOINTS)}")
