# Evaluation datasets: one job per dataset reads its files from the mirror (or downloads
# them), checks their sha256 and writes results/datasets/<name>/<split>.parquet in the
# schema lm-eval's built-in task reads (forgebench.datasets).


rule dataset:
    output:
        directory("results/datasets/{dataset}"),
    log:
        "logs/datasets/{dataset}.log",
    wildcard_constraints:
        dataset=fw.wildcard_pattern(list(fw.DATASET_NAMES)),
    conda:
        "../envs/forgebench.yaml"
    threads: 1
    resources:
        mem_mb=1024,
        runtime=5,
    params:
        datasets=get_datasets_config(),
    script:
        "../scripts/prepare_dataset.py"
