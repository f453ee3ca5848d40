# Drawing a uniform region is cheap and I/O-bound: it runs where Snakemake runs, never as a
# cluster job. The localizers that score a model (localize_scored) are model jobs.
localrules:
    localize,


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


rule localize_scored:
    """An attribution localizer's mask and scores for one seed, scored on θfull (seeds/000
    Section 3: Activations, MemFlex, WAGLE): masks/{localizer}/s{seed}/{mask,scores}.safetensors."""
    input:
        unpack(localize_inputs),
        data=DATA_FILES,
    output:
        mask=mask_path("{localizer}", "{seed}"),
        scores=scores_path("{localizer}", "{seed}"),
    wildcard_constraints:
        localizer=LOCALIZERS.pattern(lambda spec: spec.reads_weights),
    params:
        p=localize_params,
        masks=localize_mask_args,
    threads: threads_of("localize")
    resources:
        **resources_of("localize"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/localize_{{localizer}}_s{{seed}}.log",
    shell:
        command("localize", "--model {input.model} {params.masks} --out {output.mask} --scores {output.scores}")
