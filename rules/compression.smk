# Weight compression: one job per (model, method) writes the packed artifact, decompresses
# it into results/models/<model>__<method>/ (evaluated like any model, then deleted: a
# 135M model's fp32 folder is ~0.5 GB) and records size, error, memory and held-out
# perplexity paired per document with the original's, which one job scores once
# (forgebench.compression.perplexity).


rule compression_reference:
    input:
        model="results/models/{model}",
        heldout=fw.DATASET_DIR.format(dataset="boolq"),
    output:
        quality="results/compression/{model}/original.perplexity.parquet",
        measurements="results/raw/compression/{model}/original.parquet",
        resources="results/raw/compression/{model}/original.resources.parquet",
    log:
        "logs/compression/{model}/original.log",
    wildcard_constraints:
        model=(
            fw.wildcard_pattern(fw.model_names(config))
            if fw.model_names(config)
            else "$^"
        ),
    priority: 1
    conda:
        "../envs/forgebench.yaml"
    threads: get_model_threads
    resources:
        mem_mb=3072,
        runtime=10,
    params:
        evaluation=config["suites"].get("compression", {}).get("evaluation", {}),
        seed=config["seed"],
        sampler=config["sampler"],
    script:
        "../scripts/compression_reference.py"


rule compress_model:
    input:
        model="results/models/{model}",
        datasets=[fw.DATASET_DIR.format(dataset=d) for d in fw.TRAINING_DATASETS],
        heldout=fw.DATASET_DIR.format(dataset="boolq"),
        reference="results/compression/{model}/original.perplexity.parquet",
    output:
        model=temp(directory("results/models/{model}__{method}")),
        artifact="results/compression/{model}/{method}.fbc",
        quality="results/compression/{model}/{method}.perplexity.parquet",
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
        method=fw.wildcard_pattern(fw.compression_method_keys(config)),
    priority: 1
    conda:
        "../envs/forgebench.yaml"
    # Compress and decompress times and tokens/s are measured: every core, like a timing,
    # unless the model's spec names fewer. Model work first: the evaluations of the
    # compressed variants wait for it, and benchmarks fill the cores around it.
    threads: get_model_threads
    resources:
        mem_mb=3072,
        runtime=get_compression_runtime,
    params:
        method=lambda w: fw.compression_method(config, w.method),
        evaluation=config["suites"].get("compression", {}).get("evaluation", {}),
        confidence=config["statistics"]["confidence"],
        seed=config["seed"],
        sampler=config["sampler"],
    script:
        "../scripts/compress_model.py"
