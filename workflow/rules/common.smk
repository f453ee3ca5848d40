# The checked experiment, its paths and wildcard constraints, and the functions every rule uses to
# build its params, inputs and command line. The rule files hold rules only.
import itertools
import json
import os
import re
import shlex
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
from unloc.data import HOLDOUT_SOURCES, ROLES
from unloc.evaluation import EVAL_FILE, ITEMS_FILE, SUMMARY_FILE, settings_options
from unloc.figures import FIGURES
from unloc.localizers import LOCALIZERS
from unloc.objectives import OBJECTIVES
from unloc.registry import ConfigError, to_dict
from unloc.stages import STAGES, read_params
from unloc.tables import BEFORE_UNLEARNING, GEFFECT_METRICS, ORIGINAL, TABLES, UWC, WME as WME_SCENARIO
from unloc.uwc import sweep_metrics
from unloc.wme import EDITS, REFERENCES, THETA_0, WME_METRICS
from unloc.tables import GEFFECT as GEFFECT_SCENARIO

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


# seeds/000 Section 3 ("original": unlearning θfull): its masks, one per localizer, ratio and seed,
# its unlearning runs and sweeps, one per table, localizer and seed, and θfull's own point (α = 0)
ORIGINAL_DIR = f"{R}/original"
ORIGINAL_MASK_DIR = f"{ORIGINAL_DIR}/masks/{{localizer}}/p{{ratio}}/s{{seed}}"
ORIGINAL_UNLEARN = f"{ORIGINAL_DIR}/unlearn/{{table}}/{{localizer}}/s{{seed}}"
ORIGINAL_CURVE = f"{ORIGINAL_DIR}/mix/{{table}}/{{localizer}}/s{{seed}}/curve.csv"
THETA_FULL_POINT = f"{ORIGINAL_DIR}/mix/theta_full/point.csv"


def ratio_tag(ratio):
    """A mask ratio as its directory name writes it (p0.1, p0.05, p0.8)."""
    return f"{float(ratio):g}"


def original_mask(localizer, ratio, seed):
    return f"{ORIGINAL_DIR}/masks/{localizer}/p{ratio_tag(ratio)}/s{seed}/mask.safetensors"


ORIGINAL_RUNS = [dict(table=run.table, localizer=run.localizer, seed=seed)
                 for run in EXPERIMENT.original.runs.values() for seed in run.seeds]
ORIGINAL_MASKS = [original_mask(*key) for key in EXPERIMENT.original.masks()]


def original_curves(table):
    return [ORIGINAL_CURVE.format(**run) for run in ORIGINAL_RUNS if run["table"] == table]


# seeds/000 Figure 1: θo of one seed unlearned (L2 MLP matching) in its V_tgt and in Random A/B/C,
# regions drawn outside that V_tgt with their own seeds
FIGURE1 = EXPERIMENT.figure_settings.get("figure1")
FIGURE1_DIR = f"{R}/figure1"
FIGURE1_MASK = f"{FIGURE1_DIR}/masks/random/s{{seed}}/mask.safetensors"
FIGURE1_UNLEARN = f"{FIGURE1_DIR}/unlearn/{{localizer}}/s{{seed}}"
FIGURE1_CURVE = f"{FIGURE1_DIR}/mix/{{localizer}}/s{{seed}}/curve.csv"
FIGURE1_RUNS = [] if FIGURE1 is None else [
    dict(localizer="oracle", seed=FIGURE1.seed), *(dict(localizer="random", seed=s) for s in FIGURE1.random_seeds)]
FIGURE1_CURVES = [FIGURE1_CURVE.format(**run) for run in FIGURE1_RUNS]


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
    *ORIGINAL_MASKS,
    *(f"{ORIGINAL_UNLEARN}/delta.safetensors".format(**run) for run in ORIGINAL_RUNS),
    *(ORIGINAL_CURVE.format(**run) for run in ORIGINAL_RUNS),
    *([THETA_FULL_POINT] if ORIGINAL_RUNS else []),
    *(FIGURE1_MASK.format(seed=run["seed"]) for run in FIGURE1_RUNS if run["localizer"] == "random"),
    *(f"{FIGURE1_UNLEARN}/delta.safetensors".format(**run) for run in FIGURE1_RUNS),
    *FIGURE1_CURVES,
]


# Wildcards take exactly the registered names (a path with another name matches no rule).
wildcard_constraints:
    seed=r"\d+",
    ratio=r"0\.\d+|1",
    objective=OBJECTIVES.pattern(),
    localizer=LOCALIZERS.pattern(),
    table=TABLES.pattern(),
    figure=FIGURES.pattern(),


# --------------------------------------------------------------------------- command lines


def command(stage, args, threads=True, data=None):
    """The shell command of a stage's rule: its launcher (resources.smk), the stage, its params,
    the dataset directory (``data``, default the experiment's) and ``args``, logged to the rule's
    log. Where to run (--device, torchrun) is not a param: moving a run from CPU to GPU does not
    invalidate its artifacts."""
    launch = LAUNCH.get(stage, UNLOC)
    parts = [launch, "--threads {threads}" if threads else "", stage]
    if STAGES[stage].takes_params:
        parts.append("--params {params.p:q}")
    if any(arg.name == "data" for arg in STAGES[stage].args):
        parts.append(f"--data {data or DATA}")
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


def finetune_params_of(which):
    train = to_dict(EXPERIMENT.train[f"finetune_{FINETUNE_SPLIT[which]}"])
    return stage_params("finetune", train=train, seed=config["seed"], **qa_slice())


def finetune_params(w):
    return finetune_params_of(w.which)


def localize_inputs(w):
    """Section 4's uniform regions: θp's shapes, and the masks of the same seed they read."""
    reads = LOCALIZERS[w.localizer].masks(EXPERIMENT.localizer_settings[w.localizer])
    return {"model": f"{R}/theta_p", **{f"mask_{name}": mask_path(name, w.seed) for name in reads}}


def original_localize_inputs(w):
    """A Section 3 mask: the model localized in (θfull, for a localizer that scores one; else θp's
    shapes) and the masks of the same ratio and seed it reads."""
    spec = LOCALIZERS[w.localizer]
    reads = spec.masks(EXPERIMENT.original.localizers[w.localizer])
    model = f"{R}/theta_full" if spec.reads_weights else f"{R}/theta_p"
    return {"model": model, **{f"mask_{name}": original_mask(name, w.ratio, w.seed) for name in reads}}


def _localize_params(localizer, settings, ratio, seed):
    """The localizer's settings block, the ratio and the seed; how records become tokens only for
    a localizer that scores examples."""
    qa = qa_slice() if LOCALIZERS[localizer].roles else {}
    return stage_params("localize", localizer=localizer, settings=to_dict(settings), ratio=ratio, seed=int(seed), **qa)


def localize_params(w):
    return _localize_params(w.localizer, EXPERIMENT.localizer_settings[w.localizer], config["masks"]["ratio"], w.seed)


def original_localize_params(w):
    return _localize_params(w.localizer, EXPERIMENT.original.localizers[w.localizer], float(w.ratio), w.seed)


def localize_mask_args(w, input):
    return " ".join(f"--mask {key.removeprefix('mask_')}={path}" for key, path in input.items()
                    if key.startswith("mask_"))


def _unlearn_params(objective, run, scenario):
    return stage_params(
        "unlearn", objective=objective, block=run.to_dict(), train=to_dict(EXPERIMENT.unlearn_train),
        eval_batch_size=config["unlearn"]["eval_batch_size"], scenario=scenario, seed=config["seed"], **qa_slice(),
    )


def unlearn_params(w):
    """Only this objective's block: changing unlearn.npo.lr reruns the NPO jobs alone."""
    if w.objective not in EXPERIMENT.objectives:
        raise WorkflowError(f"unlearn.{w.objective}: no config block for objective {w.objective} (at least its lr)")
    return _unlearn_params(w.objective, EXPERIMENT.objectives[w.objective], "injected")


def original_unlearn_params(w):
    """A Section 3 run: its table's objective at the LR of original.<table>.lr.<localizer>."""
    run = EXPERIMENT.original.runs[(w.table, w.localizer)]
    return _unlearn_params(TABLES[w.table].objective, run.objective, ORIGINAL)


def original_unlearn_mask(w):
    return original_mask(w.localizer, TABLES[w.table].ratio, w.seed)


def table_inputs(w):
    """A Section 3 table reads its own sweeps from θfull; a Section 4 table every sweep from θo and
    the sanity verdict of the injection they rest on, those of its own experiment's (Table 6)."""
    if TABLES[w.table].experiment:
        return EXPERIMENT_TABLE_INPUTS[w.table]
    if TABLES[w.table].scenario == ORIGINAL:
        return {"curves": original_curves(w.table)}
    if TABLES[w.table].scenario == GEFFECT_SCENARIO:
        return {"curves": GEFFECT_EVALS}
    if TABLES[w.table].scenario == UWC:
        return {"curves": UWC_CURVES[w.table]}
    if TABLES[w.table].scenario == WME_SCENARIO:
        return {"curves": wme_output_evals(TABLES[w.table])}
    return {"curves": CURVES, "sanity": SANITY}


def table_params(w):
    """A UWC table also reads geffect.uwc's selection settings: changing max_drop rebuilds the
    tables alone, not the runs and sweeps they select from."""
    uwc = {"uwc": to_dict(GE.uwc)} if TABLES[w.table].scenario == UWC else {}
    return stage_params("table", table=w.table, stats=to_dict(EXPERIMENT.stats), **uwc)


def figure_inputs(w):
    """Figure 1 plots its own runs' sweeps, the G-effect figure the geffect runs' probe logs (no
    injection, so no sanity verdict); the other figures every Section 4 sweep."""
    runs = FIGURES[w.figure].runs
    if runs == GEFFECT_SCENARIO:
        return {"curves": GEFFECT_PROBES}
    if runs == WME_SCENARIO:
        return {"curves": wme_output_evals(FIGURES[w.figure])}
    return {"curves": FIGURE1_CURVES if runs == "own" else CURVES, "sanity": SANITY}


def report_caption(name):
    """The report caption of a table or figure, workflow/report/<name>.rst (the rules' one caption
    file renders it: a caption's path cannot hold a wildcard)."""
    with open(os.path.join(workflow.basedir, "workflow", "report", f"{name}.rst")) as f:
        return f.read()


def figure1_localize_params(w):
    """Figure 1's Random regions: Section 4's random localizer, drawn with their own seed outside
    the V_tgt of θo's seed."""
    return _localize_params("random", EXPERIMENT.localizer_settings["random"], config["masks"]["ratio"], w.seed)


def figure1_unlearn_params(w):
    objective = FIGURE1.objective
    return _unlearn_params(objective, EXPERIMENT.objectives[objective], "injected")


def figure1_unlearn_mask(w):
    return mask_path("oracle", w.seed) if w.localizer == "oracle" else FIGURE1_MASK.format(seed=w.seed)


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


# `unloc eval` of every named checkpoint (the evaluate rule): {name: [artifact, then what loading it
# needs]}; each θu is the unlearned model itself (α = 1)
EVAL_DIR = f"{R}/eval/{{ckpt}}"
EVAL_OUTPUTS = [f"{EVAL_DIR}/{f}" for f in (EVAL_FILE, SUMMARY_FILE, ITEMS_FILE)]
EVAL_REFERENCE = f"{R}/eval/theta_r/{EVAL_FILE}"  # θr's suite: FQ's and privleak's reference
HOLDOUT = f"{DATA}/holdout.jsonl"
HAS_HOLDOUT = config["data"]["source"] in HOLDOUT_SOURCES


def eval_checkpoints():
    theta_r, theta_full = f"{R}/theta_r", f"{R}/theta_full"
    out = {"theta_p": [f"{R}/theta_p"], "theta_r": [theta_r]}
    for seed in SEEDS:
        out[f"theta_o_s{seed}"] = [THETA_O.format(seed=seed), theta_r]
    for run in (dict(zip(RUNS, values)) for values in itertools.product(*RUNS.values())):
        out["theta_u_{objective}_{localizer}_s{seed}".format(**run)] = [
            f"{UNLEARN}/delta.safetensors".format(**run), THETA_O.format(seed=run["seed"]), theta_r]
    if ORIGINAL_RUNS:
        out["theta_full"] = [theta_full]
        for run in ORIGINAL_RUNS:
            out["theta_u_{table}_{localizer}_s{seed}".format(**run)] = [
                f"{ORIGINAL_UNLEARN}/delta.safetensors".format(**run), theta_full]
    return out


EVAL_CHECKPOINTS = eval_checkpoints()


def eval_options(reference=None):
    """`unloc eval`'s options: the config's evaluate section, model settings, and the reference."""
    system_prompt = config["model"]["system_prompt"]
    return " ".join(filter(None, [
        settings_options(EXPERIMENT.evaluate),
        f"--max-length {config['model']['max_length']} --precision {config['precision']}",
        f"--system-prompt {shlex.quote(system_prompt)}" if system_prompt is not None else "",
        f"--reference {reference}" if reference else "",
    ]))


def evaluate_options(w):
    """`unloc eval`'s options for one checkpoint, against θr's suite (θr itself: none)."""
    return eval_options(None if w.ckpt == "theta_r" else EVAL_REFERENCE)


def sanity_results():
    """{name in sanity.csv: ES result} of every checkpoint; θo of seed s is theta_o[s<s>]."""
    return {c if not c.startswith("theta_o_s") else f"theta_o[s{c[9:]}]": f"{R}/es/{c}.json" for c in CHECKPOINTS}


# --------------------------------------------------------------------------- seeds/001 (G-effect)
# Per forget split: its dataset (the experiment's own for data.forget_split), its θr, and from the
# shared θfull one full-parameter unlearning run per objective, each evaluated against that θr.

GE = EXPERIMENT.geffect
GEFFECT = f"{R}/geffect/{{split}}"
GEFFECT_RUN = f"{GEFFECT}/{{objective}}"
GEFFECT_EVAL = f"{GEFFECT}/eval/{{method}}"
GEFFECT_EVAL_OUTPUTS = [f"{GEFFECT_EVAL}/{f}" for f in (EVAL_FILE, SUMMARY_FILE, ITEMS_FILE)]
GEFFECT_TABLES = [t for t in EXPERIMENT.tables if TABLES[t].scenario == GEFFECT_SCENARIO]


def split_data(split):
    """The dataset directory of a forget split: the experiment's own for data.forget_split."""
    return DATA if split == config["data"]["forget_split"] else f"{DATA}/splits/{split}"


def split_theta_r(split):
    """θr of a forget split: the experiment's own for data.forget_split."""
    return f"{R}/theta_r" if split == config["data"]["forget_split"] else f"{R}/splits/{split}/theta_r"


def geffect_model(w):
    """The checkpoint an evaluation of seeds/001 scores: θr, θfull (before unlearning) or a run's θu."""
    if w.method == "theta_r":
        return split_theta_r(w.split)
    if w.method == BEFORE_UNLEARNING:
        return f"{R}/theta_full"
    return f"{GEFFECT_RUN}/theta_u".format(split=w.split, objective=w.method)


def geffect_unlearn_params(w):
    """Only this split's and objective's block: changing geffect.npo.lr reruns the NPO runs alone."""
    return stage_params(
        "unlearn_all", objective=w.objective, block=GE.blocks[(w.split, w.objective)], train=to_dict(GE.train),
        eval_batch_size=config["unlearn"]["eval_batch_size"], scenario=ORIGINAL, seed=config["seed"],
        probe_every=GE.probe_every, **qa_slice(),
    )


GEFFECT_SPLITS, GEFFECT_OBJECTIVES = (GE.splits, GE.objectives) if GE else ((), ())
GEFFECT_METHODS = ["theta_r", BEFORE_UNLEARNING, *GEFFECT_OBJECTIVES]
GEFFECT_EVALS = [f"{GEFFECT_EVAL}/{EVAL_FILE}".format(split=s, method=m)
                 for s in GEFFECT_SPLITS for m in GEFFECT_METHODS[1:]]
GEFFECT_RUNS = [GEFFECT_RUN.format(split=s, objective=o) for s in GEFFECT_SPLITS for o in GEFFECT_OBJECTIVES]
GEFFECT_PROBES = [f"{run}/probe.csv" for run in GEFFECT_RUNS]
GEFFECT_FIGURES = [f for f in EXPERIMENT.figures if FIGURES[f].runs == GEFFECT_SCENARIO]
GEFFECT_ARTIFACTS = [
    *GEFFECT_EVALS,
    *GEFFECT_PROBES,
    *(f"{run}/theta_u" for run in GEFFECT_RUNS),
] if GEFFECT_TABLES or GEFFECT_FIGURES else []
FINAL_ARTIFACTS += GEFFECT_ARTIFACTS

# Tables 2-10 (UWC): per configured table, split of geffect.uwc and value of its swept setting, a
# full-parameter run from θfull mixed with θfull: results/{name}/geffect/{split}/uwc/{table}/{value}/
UWC_DIR = f"{GEFFECT}/uwc"
UWC_RUN = f"{UWC_DIR}/{{table}}/{{value}}"
UWC_ORIGIN = f"{UWC_DIR}/theta_full.csv"  # θfull's point (α = 0), shared by every sweep of the split
UWC_RUNS = {(t, s, f"{v}"): block for (t, s, v), block in (GE.uwc_runs if GE else {}).items()}
UWC_CURVES = {}
for (_table, _split, _value) in UWC_RUNS:
    UWC_CURVES.setdefault(_table, []).append(f"{UWC_RUN}/curve.csv".format(table=_table, split=_split, value=_value))
FINAL_ARTIFACTS += [f for curves in UWC_CURVES.values() for f in curves]


def uwc_unlearn_params(w):
    """Only this run's block (its objective's geffect block, the table's fixed settings and the
    swept value): changing one table's values reruns that table's runs alone."""
    return stage_params(
        "unlearn_all", objective=TABLES[w.table].objective, block=UWC_RUNS[(w.table, w.split, w.value)],
        train=to_dict(GE.train), eval_batch_size=config["unlearn"]["eval_batch_size"], scenario=ORIGINAL,
        seed=config["seed"], **qa_slice(),
    )


def uwc_mix_params(stage):
    """The UWC sweeps' curve metrics (uwc.sweep_metrics) at the mix section's batching, on the
    held-out retain items (rs_items: retain_perturbed)."""
    mix = {**to_dict(EXPERIMENT.mix), "alphas": GE.uwc.alphas, "rs_items": "retain_perturbed",
           "metrics": list(sweep_metrics(GE.uwc))}
    return stage_params(stage, mix=mix, es_convention=EXPERIMENT.eval.es_convention, **qa_slice())


# --------------------------------------------------------------------------- seeds/004 (WME)
# Per forget split of wme.splits (and wme.sweep_splits) and run (seed of wme.seeds): θ_fgt, θp
# fine-tuned on the forget set; the set-level gradients the edits read; each edit and baseline
# the configured WME tables report; and every method's `unloc eval` against the split's θr:
# results/{name}/wme/{split}/.

WM = EXPERIMENT.wme
WME = f"{R}/wme/{{split}}"
THETA_FGT = f"{WME}/theta_fgt/s{{seed}}"
WME_METHOD = f"{WME}/{{method}}/s{{seed}}"  # an edit's or a baseline's θu: {WME_METHOD}/theta_u
WME_GRADIENTS = f"{WME}/gradients/{{key}}.safetensors"
WME_EVAL_RUN = f"{WME}/eval/{{method}}/s{{seed}}"  # an edit or a baseline in one run
WME_EVAL_REF = f"{WME}/eval/{{method}}"  # full, gt, and theta_r (θr without a reference: FQ's reference)
WME_REFERENCE = f"{WME}/eval/theta_r/{EVAL_FILE}"
WME_SPLITS = WM.splits if WM else ()
WME_SEEDS = WM.settings.seeds if WM else ()
WME_BASELINES = tuple(WM.baselines) if WM else ()


def wme_evals(split, method):
    """The TOFU_EVAL.json files of one method on a split: one per run, one for a reference."""
    if method in REFERENCES:
        return [f"{WME_EVAL_REF}/{EVAL_FILE}".format(split=split, method=method)]
    return [f"{WME_EVAL_RUN}/{EVAL_FILE}".format(split=split, method=method, seed=s) for s in WME_SEEDS]


def wme_output_evals(spec):
    """Every evaluation a WME table or figure reads: its rows on its splits (but the baselines
    the config does not run)."""
    return [f for s in WM.table_splits(spec) for m in spec.rows if m in WM.methods[s] for f in wme_evals(s, m)]


# every gradients file an edit reads: (split, key) -> (model, statistic, fraction, seed)
WME_GRADIENT_FILES = {}
for _split, _methods in (WM.methods.items() if WM else ()):
    for _method in _methods:
        for _seed in (WME_SEEDS if _method in EDITS else ()):
            _key = EDITS[_method].gradients_key(_seed)
            if _key is not None:
                _edit = EDITS[_method]
                # the whole data draw no sample: their file is the runs' own, whatever the seeds
                _sample_seed = _seed if _edit.sample_fraction < 1 else 0
                WME_GRADIENT_FILES[(_split, _key)] = (_edit.at, _edit.statistic, _edit.sample_fraction, _sample_seed)


def wme_gradients(w):
    """The gradients file an edit reads, if any."""
    key = EDITS[w.method].gradients_key(int(w.seed))
    return [] if key is None else [WME_GRADIENTS.format(split=w.split, key=key)]


def wme_gradients_model(w):
    at = WME_GRADIENT_FILES[(w.split, w.key)][0]
    return f"{R}/theta_p" if at == THETA_0 else f"{R}/theta_full"


def wme_gradients_params(w):
    _, statistic, fraction, seed = WME_GRADIENT_FILES[(w.split, w.key)]
    return stage_params("gradients", batch_size=WM.settings.gradients_batch_size, statistic=statistic,
                        sample_fraction=fraction, seed=seed, **qa_slice())


def wme_edit_params(w):
    return stage_params("edit", weighting=EDITS[w.method].weighting_for(int(w.seed)))


def wme_baseline_params(w):
    """Only this baseline's block and the section's loop: changing wme.baselines.gd reruns GD alone."""
    objective, block = WM.baselines[w.method]
    return stage_params(
        "unlearn_all", objective=objective, block=block, train=to_dict(WM.settings.train),
        eval_batch_size=config["unlearn"]["eval_batch_size"], scenario=ORIGINAL, seed=int(w.seed), **qa_slice(),
    )


def wme_eval_model(w):
    """The checkpoint an evaluation of seeds/004 scores."""
    if w.method == "full":
        return f"{R}/theta_full"
    if w.method in ("gt", "theta_r"):
        return split_theta_r(w.split)
    return f"{WME_METHOD}/theta_u".format(split=w.split, method=w.method, seed=w.seed)


WME_ARTIFACTS = [f for split, methods in (WM.methods.items() if WM else ()) for m in methods for f in wme_evals(split, m)]
FINAL_ARTIFACTS += WME_ARTIFACTS
DATA_SPLITS = sorted({*GEFFECT_SPLITS, *WME_SPLITS} - {config["data"]["forget_split"]})
