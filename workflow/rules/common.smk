# The checked experiment, its paths and wildcard constraints, and the functions every rule uses to
# build its params, inputs and command line. The rule files hold rules only.
import json
import os
import sys

from snakemake.exceptions import WorkflowError

# Stages run as `python -m unloc.cli` from this checkout's src/, in the venv (where the project
# is also installed) and in the conda environment of envs/unloc.yaml alike: that file holds only
# the dependencies, because Snakemake deploys a copy of it, where a relative `-e ..` means nothing.
SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))
CONDA_ENV = os.path.join(workflow.basedir, "envs", "unloc.yaml")


envvars:
    "PYTHONPATH",


from unloc.config import INJECTION_MASK, check_config
from unloc.data import ROLES
from unloc.figures import FIGURES
from unloc.localizers import LOCALIZERS
from unloc.objectives import OBJECTIVES
from unloc.registry import ConfigError, to_dict
from unloc.stages import STAGES, read_params
from unloc.tables import TABLES

try:
    EXPERIMENT = check_config(config)
except ConfigError as e:
    raise WorkflowError(f"config: {e}. Nothing was run.") from None


# --------------------------------------------------------------------------- paths

R = f"results/{config['name']}"
DATA = f"results/data/{config['data']['name']}"
DATA_FILES = expand(f"{DATA}/{{role}}.jsonl", role=ROLES)
SEEDS = config["masks"]["seeds"]
LOGS = f"{R}/logs"

THETA_O = f"{R}/theta_o/s{{seed}}/delta.safetensors"
UNLEARN = f"{R}/unlearn/{{objective}}/{{localizer}}/s{{seed}}"
CURVE = f"{R}/mix/{{objective}}/{{localizer}}/s{{seed}}/curve.csv"
THETA_O_POINT = f"{R}/mix/theta_o/s{{seed}}/point.csv"
REFERENCE = f"{R}/eval/theta_r_forget_truth_ratio.safetensors"
SANITY = f"{R}/sanity.csv"
RUNS = dict(objective=list(EXPERIMENT.unlearn_objectives), localizer=list(EXPERIMENT.unlearn_localizers), seed=SEEDS)
CURVES = expand(CURVE, **RUNS)
TABLE_FILES = expand(f"{R}/tables/{{table}}.{{ext}}", table=EXPERIMENT.tables, ext=["csv", "md"])
FIGURE_FILES = expand(f"{R}/figures/{{figure}}.{{ext}}", figure=EXPERIMENT.figures, ext=["png", "pdf"])


def mask_path(localizer, seed):
    return f"{R}/masks/{localizer}/s{seed}/mask.safetensors"


def scores_path(localizer, seed):
    return f"{R}/masks/{localizer}/s{seed}/scores.safetensors"


# Every artifact of the configured experiment: `rule all` asks for all of them, so a plain rerun
# rebuilds any that is missing (a job killed or failed after its descendants were built).
FINAL_ARTIFACTS = [
    SANITY,
    *TABLE_FILES,
    *FIGURE_FILES,
    *CURVES,
    *expand(f"{UNLEARN}/delta.safetensors", **RUNS),
    *expand(THETA_O_POINT, seed=SEEDS),
    *expand(mask_path("{localizer}", "{seed}"), localizer=list(EXPERIMENT.localizers), seed=SEEDS),
    REFERENCE,
]


# Wildcards take exactly the registered names (a path with another name matches no rule).
wildcard_constraints:
    seed=r"\d+",
    objective=OBJECTIVES.pattern(),
    localizer=LOCALIZERS.pattern(),
    table=TABLES.pattern(),
    figure=FIGURES.pattern(),


# --------------------------------------------------------------------------- command lines


def command(stage, args, threads=True):
    """The shell command of a stage's rule: its launcher (resources.smk), the stage, its params,
    the dataset directory and ``args``, logged to the rule's log. Where to run (--device, torchrun)
    is not a param: moving a run from CPU to GPU does not invalidate its artifacts."""
    launch = LAUNCH.get(stage, UNLOC)
    parts = [launch, "--threads {threads}" if threads else "", stage]
    if STAGES[stage].takes_params:
        parts.append("--params {params.p:q}")
    if any(arg.name == "data" for arg in STAGES[stage].args):
        parts.append(f"--data {DATA}")
    return " ".join(p for p in parts if p) + f" {args} > {{log}} 2>&1"


# Where to run is not part of any result, so it is a CLI flag and not a param.
UNLOC = f"python -m unloc.cli --device {config['device']}"


# --------------------------------------------------------------------------- params


def stage_params(stage, **slices):
    """The config slice a rule depends on, plus its stage's version, as one JSON string.

    The slice is read into the stage's params dataclass (defaults filled in, every key checked)
    while the DAG is built. Snakemake's params trigger compares these strings, so a changed
    value reruns exactly the rules whose slice contains it (and their descendants). Every stage
    that runs a model also depends on the precision its forward passes run in and its
    checkpoints are written in.
    """
    spec = STAGES[stage]
    if spec.runs_model:
        slices = {**slices, "precision": config["precision"]}
    try:
        params = to_dict(read_params(spec, slices))
    except ConfigError as e:
        raise WorkflowError(f"{stage}: {e}") from None
    return json.dumps({"version": spec.version, **params}, sort_keys=True)


def qa_slice():
    """What every model stage needs to turn records into tokens."""
    return {"max_length": config["model"]["max_length"], "system_prompt": config["model"]["system_prompt"]}


def pretrain_params():
    """Only what the model source reads: a named checkpoint is resolved and a GGUF file converted,
    so training settings do not touch them."""
    model = config["model"]
    if model["source"] == "hf":
        return stage_params("pretrain", model={"source": "hf", "name_or_path": model["name_or_path"]})
    if model["source"] == "gguf":
        return stage_params("pretrain", model={"source": "gguf", "gguf": model["gguf"]})
    return stage_params("pretrain", model=model, train=to_dict(EXPERIMENT.train["pretrain"]), seed=config["seed"])


FINETUNE_SPLIT = {"r": "retain", "full": "full"}  # θr: retain set; θfull: all of D (Section 3)


def finetune_params(w):
    train = to_dict(EXPERIMENT.train[f"finetune_{FINETUNE_SPLIT[w.which]}"])
    return stage_params("finetune", train=train, seed=config["seed"], **qa_slice())


def localize_inputs(w):
    """The model localized in (θp's shapes for a uniform region; θfull, seeds/000 Section 3's
    original model, for a localizer that scores one) and the masks of the same seed it reads."""
    spec = LOCALIZERS[w.localizer]
    reads = spec.masks(EXPERIMENT.localizer_settings[w.localizer])
    model = f"{R}/theta_full" if spec.reads_weights else f"{R}/theta_p"
    return {"model": model, **{f"mask_{name}": mask_path(name, w.seed) for name in reads}}


def localize_params(w):
    """The localizer's settings block, the ratio and the seed; how records become tokens only for
    a localizer that scores examples."""
    spec = LOCALIZERS[w.localizer]
    settings = to_dict(EXPERIMENT.localizer_settings[w.localizer])
    qa = qa_slice() if spec.roles else {}
    return stage_params("localize", localizer=w.localizer, settings=settings, ratio=config["masks"]["ratio"],
                        seed=int(w.seed), **qa)


def localize_mask_args(w, input):
    return " ".join(f"--mask {key.removeprefix('mask_')}={path}" for key, path in input.items()
                    if key.startswith("mask_"))


def unlearn_params(w):
    """Only this objective's block: changing unlearn.npo.lr reruns the NPO jobs alone."""
    if w.objective not in EXPERIMENT.objectives:
        raise WorkflowError(f"unlearn.{w.objective}: no config block for objective {w.objective} (at least its lr)")
    return stage_params(
        "unlearn", objective=w.objective, block=EXPERIMENT.objectives[w.objective].to_dict(),
        train=to_dict(EXPERIMENT.unlearn_train), eval_batch_size=config["unlearn"]["eval_batch_size"],
        scenario="injected", seed=config["seed"], **qa_slice(),
    )


def mix_params(stage):
    """score_point and mix_eval score the same curve metrics with the same settings."""
    return stage_params(stage, mix=to_dict(EXPERIMENT.mix), es_convention=EXPERIMENT.eval.es_convention, **qa_slice())


CHECKPOINTS = ["theta_p", "theta_r"] + [f"theta_o_s{s}" for s in SEEDS]


def checkpoint_artifacts(ckpt):
    """Artifact of a named checkpoint, then what loading it needs (a delta needs its parents)."""
    if ckpt in ("theta_p", "theta_r"):
        return [f"{R}/{ckpt}"]
    if ckpt.startswith("theta_o_s") and ckpt[len("theta_o_s"):].isdigit():
        return [f"{R}/theta_o/s{ckpt[len('theta_o_s'):]}/delta.safetensors", f"{R}/theta_r"]
    raise WorkflowError(f"unknown checkpoint {ckpt!r}: expected one of {', '.join(CHECKPOINTS)}")


def sanity_results():
    """{name in sanity.csv: ES result} of every checkpoint; θo of seed s is theta_o[s<s>]."""
    return {c if not c.startswith("theta_o_s") else f"theta_o[s{c[9:]}]": f"{R}/es/{c}.json" for c in CHECKPOINTS}
