# Models: one job per model a stage reads builds it (the cognate reference model, trained
# briefly on the training splits) into results/models/<name>/ in Hugging Face format, or
# references a hub or path model there: links to the hub cache or the folder, read in
# place, with their sha256 digests in source.json (forgebench.models).


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
    priority: 1
    conda:
        "../envs/forgebench.yaml"
    # Training throughput is measured: the build claims every core, like a timing, unless
    # the model's spec names fewer (the default run's models take one each). Model work
    # first: evaluation, compression and EvoMerge wait for it.
    threads: get_model_threads
    resources:
        mem_mb=get_model_resource("mem_mb"),
        runtime=get_model_resource("runtime"),
    params:
        spec=get_model_spec,
        seed=config["seed"],
        sampler=config["sampler"],
        datasets_dir=fw.DATASETS_ROOT,
    script:
        "../scripts/build_model.py"
