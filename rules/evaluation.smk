# Model evaluation through lm-eval: one job per model (all its tasks in one process, the
# model loaded once), one per (model, suite) for the suite's score, and one per compared
# pair of models (forgebench.evaluation).


rule evaluate_model:
    input:
        model="results/models/{model}",
        datasets=lambda w: fw.model_task_datasets(config, w.model),
        local_data=get_eval_local_data,
    output:
        record="results/raw/eval/{model}.parquet",
        resources="results/raw/eval/{model}.resources.parquet",
        samples="results/raw/eval/{model}.samples.parquet",
        lm_eval=directory("results/eval/{model}/tasks"),
    log:
        "logs/eval/{model}.log",
    wildcard_constraints:
        model=fw.wildcard_pattern(fw.evaluated_models(config)) or "$^",
    priority: 1
    conda:
        "../envs/forgebench.yaml"
    # A configured model's evaluation takes the model's cores (models.<name>.threads,
    # default every core); derived models' take one each: two evaluations side by side
    # beat one with two threads on 2 cores. First in line, like the model jobs.
    threads: get_eval_threads
    resources:
        mem_mb=get_eval_resource("mem_mb"),
        runtime=get_eval_resource("runtime"),
    params:
        tasks=lambda w: fw.model_tasks(config, w.model),
        # This model's settings only, with datasets.allow_online (the run's one switch
        # for going online): listing another model or suite leaves this job's params alone.
        evaluation=get_eval_settings,
        datasets_dir=fw.DATASETS_ROOT,
        seed=config["seed"],
        sampler=config["sampler"],
        # level of the exact intervals the record carries beside each accuracy
        confidence=config["statistics"]["confidence"],
    script:
        "../scripts/evaluate_model.py"


rule score_suite:
    input:
        record=lambda w: fw.EVAL_RAW.format(model=w.model),
        samples=lambda w: fw.EVAL_SAMPLES.format(model=w.model),
    output:
        record="results/raw/suites/{model}/{suite}.parquet",
        resources="results/raw/suites/{model}/{suite}.resources.parquet",
        table="results/eval/{model}/suite_{suite}.parquet",
    log:
        "logs/suites/{model}/{suite}.log",
    wildcard_constraints:
        suite=fw.wildcard_pattern(list(fw.EVAL_SUITES)),
    conda:
        "../envs/forgebench.yaml"
    threads: 1
    resources:
        mem_mb=1024,
        runtime=10,
    params:
        allow_online=config["datasets"]["allow_online"],
        statistics=config["statistics"],
        seed=config["seed"],
        sampler=config["sampler"],
    script:
        "../scripts/score_suite.py"


rule compare_models:
    input:
        baseline=lambda w: fw.EVAL_SAMPLES.format(model=w.baseline),
        candidate=lambda w: fw.EVAL_SAMPLES.format(model=w.candidate),
    output:
        measurements="results/raw/eval_pairs/{baseline}/{candidate}.parquet",
        resources="results/raw/eval_pairs/{baseline}/{candidate}.resources.parquet",
    log:
        "logs/eval_pairs/{baseline}/{candidate}.log",
    conda:
        "../envs/forgebench.yaml"
    threads: 1
    resources:
        mem_mb=1024,
        runtime=10,
    params:
        tasks=lambda w: fw.pair_tasks(config, w.baseline, w.candidate),
        statistics=config["statistics"],
        seed=config["seed"],
        sampler=config["sampler"],
    script:
        "../scripts/compare_models.py"
