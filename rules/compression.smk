# Weight compression: one job per (model, method) writes the packed artifact, decompresses
# it into results/models/<model>__<method>/ (evaluated like any model) and records size,
# error, perplexity, speed and memory (forgebench.compression).


rule compress_model:
    input:
        model="results/models/{model}",
        datasets=[fw.DATASET_DIR.format(dataset=d) for d in fw.TRAINING_DATASETS],
    output:
        model=directory("results/models/{model}__{method}"),
        artifact="results/compression/{model}/{method}.fbc",
        measurements="results/raw/compression/{model}/{method}.parquet",
        resources="results/raw/compression/{model}/{method}.resources.parquet",
    log:
        "logs/compression/{model}/{method}.log",
    wildcard_constraints:
        model=(
            fw.wildcard_pattern(fw.model_names(config))
            if fw.model_names(config)
            else "$^"
        ),
        method=fw.wildcard_pattern(list(fw.COMPRESSION_METHODS)),
    conda:
        "../envs/forgebench.yaml"
    # Compress and decompress times and tokens/s are measured: every core, like a timing.
    threads: get_model_threads
    resources:
        mem_mb=3072,
        runtime=get_compression_runtime,
    params:
        method=lambda w: fw.compression_method(config, w.method),
        evaluation=config["suites"].get("compression", {}).get("evaluation", {}),
        seed=config["seed"],
        sampler=config["sampler"],
    script:
        "../scripts/compress_model.py"
