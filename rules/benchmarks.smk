# One generic rule runs any registered benchmark by name (forgebench.registry).


rule benchmark:
    input:
        unpack(get_benchmark_inputs),
        datasets=get_benchmark_dataset_inputs,
    output:
        measurements="results/raw/{suite}/{benchmark}.parquet",
        resources="results/raw/{suite}/{benchmark}.resources.parquet",
    log:
        "logs/benchmark/{suite}/{benchmark}.log",
    conda:
        "../envs/forgebench.yaml"
    threads: get_benchmark_threads
    resources:
        mem_mb=get_benchmark_resource("mem_mb"),
        runtime=get_benchmark_resource("runtime"),
    params:
        section=get_benchmark_config,
        seed=config["seed"],
        sampler=config["sampler"],
        alerts=config["alerts"],
        fail=get_fail_switch,
        planted_delay_s=get_planted_delay,
        datasets_dir=get_benchmark_datasets_dir,
    script:
        "../scripts/run_benchmark.py"
