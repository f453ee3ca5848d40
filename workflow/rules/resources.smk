# What each job asks a scheduler for, by stage and by the model's size class (model.size_class).
#
# gpu: GPUs per job (0 = a CPU job); threads: CPU cores (sbatch --cpus-per-task); mem_mb: host
# memory; runtime: minutes (sbatch --time). Locally, threads and mem_mb only bound how many jobs
# run at once. The numbers and the arithmetic behind the 8B ones are in docs/cluster.md.
RESOURCES = {
    # The embedded default and the quick config: CPU jobs of seconds to minutes.
    # One thread a job: on the tiny model a second thread speeds a job up 1.3x only (an NPO run:
    # 10.1 s on one thread, 7.8 s on two), so two jobs side by side finish sooner than one at a time.
    "tiny": {
        "default": dict(gpu=0, threads=1, mem_mb=4000, runtime=30),
        "mix_eval": dict(gpu=0, threads=1, mem_mb=3000, runtime=60),  # 21 mixing points: a longer job
    },
    # ~100M-1B parameters (SmolLM2-135M): every stage fits one GPU.
    "small": {
        "default": dict(gpu=1, threads=8, mem_mb=32000, runtime=60),
        "pretrain": dict(gpu=0, threads=4, mem_mb=16000, runtime=30),  # converts or resolves θp: no training
        "finetune": dict(gpu=1, threads=8, mem_mb=32000, runtime=120),
        "mix_eval": dict(gpu=1, threads=8, mem_mb=32000, runtime=240),
    },
    # 7-8B (Llama-3.1-8B-Instruct, OLMo-2-7B-Instruct). Full-parameter fine-tuning keeps weights,
    # gradients and AdamW state in fp32 (16 bytes per parameter, 128 GB at 8B): FSDP over 4 GPUs.
    # Masked stages keep optimizer state for the masked columns only and fit one 80 GB GPU.
    "8b": {
        "default": dict(gpu=1, threads=16, mem_mb=128000, runtime=120),
        "pretrain": dict(gpu=0, threads=8, mem_mb=64000, runtime=120),  # resolves the hub checkpoint
        "finetune": dict(gpu=4, threads=32, mem_mb=256000, runtime=240),
        "mix_eval": dict(gpu=1, threads=16, mem_mb=128000, runtime=180),
    },
}


def job_resources(stage):
    """The resource dict of ``stage`` at this config's size class; a config pinned to
    ``device: cpu`` (config/smollm2-tofu-cpu.yaml) asks for no GPU whatever its size class."""
    table = RESOURCES[config["model"]["size_class"]]
    resources = dict(table.get(stage, table["default"]))
    if config["device"] == "cpu":
        resources["gpu"] = 0
    return resources


def threads_of(stage):
    return job_resources(stage)["threads"]


def resources_of(stage):
    """Snakemake ``resources:`` of a stage (threads are declared apart, as ``threads:``)."""
    return {k: v for k, v in job_resources(stage).items() if k != "threads"}


def launcher(stage):
    """The command that starts a stage: the CLI, or ``torchrun`` with one process per GPU
    when a full-parameter stage asks for several (FSDP, src/unloc/distributed.py; ``--threads``
    is then split between the processes). The ``--`` ends torchrun's options: without it,
    torchrun's parser takes the stage's ``--log`` for an abbreviation of its own ``--log-dir``."""
    gpus = job_resources(stage)["gpu"]
    if gpus > 1:
        return f"torchrun --standalone --nproc-per-node {gpus} -m -- unloc.cli --device {config['device']}"
    return UNLOC


# Training stages that may run on several GPUs (their specs say multi_process); every other stage
# runs on one device.
MULTI_GPU_STAGES = [spec.name for spec in STAGES.specs() if spec.multi_process]
for _size, _table in RESOURCES.items():
    for _stage, _res in _table.items():
        if _stage != "default" and _stage not in STAGES:
            raise WorkflowError(f"RESOURCES[{_size!r}] names {_stage!r}, which is not a stage")
        if _res["gpu"] > 1 and _stage not in MULTI_GPU_STAGES:
            raise WorkflowError(f"RESOURCES[{_size!r}][{_stage!r}] asks for {_res['gpu']} GPUs, but only "
                                f"{', '.join(MULTI_GPU_STAGES)} run distributed")

LAUNCH = {spec.name: launcher(spec.name) for spec in STAGES.specs() if spec.runs_model}
