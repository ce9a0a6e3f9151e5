# One generic rule runs any registered benchmark by name (forgebench.registry).


rule benchmark:
    output:
        measurements="results/raw/{suite}/{benchmark}.parquet",
        resources="results/raw/{suite}/{benchmark}.resources.parquet",
    log:
        "logs/benchmark/{suite}/{benchmark}.log",
    conda:
        "../envs/forgebench.yaml"
    threads: get_benchmark_threads
    resources:
        mem_mb=lambda wildcards, attempt: 2048 * attempt,
        runtime=lambda wildcards, attempt: 20 * attempt,
    params:
        section=get_benchmark_config,
        seed=config["seed"],
        sampler=config["sampler"],
    script:
        "../scripts/run_benchmark.py"
