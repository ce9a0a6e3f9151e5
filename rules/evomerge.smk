# EvoMerge: evolutionary merging of the seed models (forgebench.evomerge). Generation g's
# plan reads generation g-1's suite scores; each individual is its own merge job and is
# scored by the evaluation stage's evaluate_model/score_suite jobs on the fitness suite, so
# an interrupted evolution resumes where it stopped. The summary writes the evolution's
# record, its lineage and a copy of the fittest individual.
from forgebench.evomerge import stages as evo

evo.check_config(config)


rule evomerge_plan:
    input:
        unpack(lambda w: evo.plan_inputs(config, int(w.generation))),
    output:
        "results/evomerge/gen{generation}/plan.json",
    log:
        "logs/evomerge/plan_gen{generation}.log",
    wildcard_constraints:
        generation="[0-9]+",
    conda:
        "../envs/forgebench.yaml"
    threads: 1
    resources:
        mem_mb=1024,
        runtime=5,
    params:
        evomerge=evo.plan_params(config),
        seed=config["seed"],
    script:
        "../scripts/evomerge_plan.py"


# Outputs match only evo-g<g>-i<i>: the `model` rule (rules/models.smk) makes configured
# names, the summary the export.
rule evomerge_merge:
    input:
        plan="results/evomerge/gen{generation}/plan.json",
        seeds=evo.seed_dirs(config),
    output:
        model=directory("results/models/evo-g{generation}-i{index}"),
        record="results/raw/evomerge/merge/evo-g{generation}-i{index}.parquet",
        resources="results/raw/evomerge/merge/evo-g{generation}-i{index}.resources.parquet",
    log:
        "logs/evomerge/evo-g{generation}-i{index}.log",
    wildcard_constraints:
        generation="[0-9]+",
        index="[0-9]+",
    conda:
        "../envs/forgebench.yaml"
    # One thread: merges of one generation run side by side, like the evaluations.
    threads: 1
    resources:
        mem_mb=3072,
        runtime=15,
    params:
        seeds=evo.section(config)["seeds"],
        seed=config["seed"],
        sampler=config["sampler"],
    script:
        "../scripts/evomerge_merge.py"


rule evomerge_summary:
    input:
        unpack(lambda w: evo.summary_inputs(config)),
    output:
        record=evo.EVOLUTION_RAW,
        resources=evo.EVOLUTION_RESOURCES,
        lineage=evo.LINEAGE,
        table=evo.TABLE,
        best=directory(evo.export_dir(config)),
    log:
        "logs/evomerge/summary.log",
    conda:
        "../envs/forgebench.yaml"
    threads: 1
    resources:
        mem_mb=2048,
        runtime=10,
    params:
        evomerge=evo.section(config),
        datasets=config.get("datasets", {}),
        statistics=config["statistics"],
        seed=config["seed"],
        sampler=config["sampler"],
    script:
        "../scripts/evomerge_summary.py"
