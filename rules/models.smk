# Models: one job per configured model builds it (the cognate reference model, trained
# briefly on the training splits), fetches it from the hub or checks a local copy, and
# writes it to results/models/<name>/ in Hugging Face format (forgebench.models).


rule model:
    input:
        get_model_build_inputs,
    output:
        model=directory("results/models/{model}"),
        measurements="results/raw/models/build/{model}.parquet",
        resources="results/raw/models/build/{model}.resources.parquet",
    log:
        "logs/models/{model}.log",
    wildcard_constraints:
        model=(
            fw.wildcard_pattern(fw.model_names(config))
            if fw.model_names(config)
            else "$^"
        ),
    conda:
        "../envs/forgebench.yaml"
    # Training throughput is measured: the build claims every core, like a timing.
    threads: get_model_threads
    resources:
        mem_mb=get_model_resource("mem_mb"),
        runtime=get_model_resource("runtime"),
    params:
        spec=lambda w: config["models"][w.model],
        seed=config["seed"],
        sampler=config["sampler"],
        datasets_dir=fw.DATASETS_ROOT,
    script:
        "../scripts/build_model.py"
