# Drawing a uniform region is cheap and I/O-bound: it runs where Snakemake runs, never as a
# cluster job. The localizers that score a model (localize_scored) are model jobs.
localrules:
    localize,
    localize_original,


rule localize:
    """A uniform region for one seed (oracle = V_tgt, random = V_rdm):
    results/{name}/masks/{localizer}/s{seed}/mask.safetensors."""
    input:
        unpack(localize_inputs),
    output:
        mask_path("{localizer}", "{seed}"),
    wildcard_constraints:
        localizer=LOCALIZERS.pattern(lambda spec: not spec.reads_weights),
    params:
        p=localize_params,
        masks=localize_mask_args,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/localize_{{localizer}}_s{{seed}}.log",
    shell:
        command("localize", "--model {input.model} {params.masks} --out {output}", threads=False)


rule localize_original:
    """A uniform region of seeds/000 Section 3 (Random over all value vectors, or over all single
    weights) for one ratio and seed: results/{name}/original/masks/{localizer}/p{ratio}/s{seed}/."""
    input:
        unpack(original_localize_inputs),
    output:
        f"{ORIGINAL_MASK_DIR}/mask.safetensors",
    wildcard_constraints:
        localizer=LOCALIZERS.pattern(lambda spec: not spec.reads_weights),
    params:
        p=original_localize_params,
        masks=localize_mask_args,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/original/localize_{{localizer}}_p{{ratio}}_s{{seed}}.log",
    shell:
        command("localize", "--model {input.model} {params.masks} --out {output}", threads=False)


rule localize_scored:
    """An attribution localizer's mask and scores for one ratio and seed, scored on θfull
    (seeds/000 Section 3: Activations, MemFlex, WAGLE):
    results/{name}/original/masks/{localizer}/p{ratio}/s{seed}/{mask,scores}.safetensors."""
    input:
        unpack(original_localize_inputs),
        data=DATA_FILES,
    output:
        mask=f"{ORIGINAL_MASK_DIR}/mask.safetensors",
        scores=f"{ORIGINAL_MASK_DIR}/scores.safetensors",
    wildcard_constraints:
        localizer=LOCALIZERS.pattern(lambda spec: spec.reads_weights),
    params:
        p=original_localize_params,
        masks=localize_mask_args,
    threads: threads_of("localize")
    resources:
        **resources_of("localize"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/original/localize_{{localizer}}_p{{ratio}}_s{{seed}}.log",
    shell:
        command("localize", "--model {input.model} {params.masks} --out {output.mask} --scores {output.scores}")
