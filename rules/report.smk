# Summary statistics, verdicts, figures, the HTML report and its Markdown and JSON
# summaries, from every raw table and its resource samples (forgebench.report).

# Category of each figure kind in `snakemake --report`; mirrors forgebench.plots.KINDS
# (tests/test_report.py checks), kept here so parsing the workflow imports no matplotlib.
FIGURE_CATEGORIES = {
    "cdf": "Latency distributions",
    "percentiles": "Latency percentiles",
    "ab": "A vs B comparisons",
    "resources": "Resource timelines",
    "accuracy": "Evaluation accuracy",
    "compression": "Compression",
    "scaling": "Scaling",
    "workers": "Scaling",
    "tradeoff": "Trade-offs",
    "fitness": "EvoMerge fitness",
    "trend": "History",
}
# Figures are named <kind>_<suite>_<rest>.png (forgebench.plots), suites without "_".
FIGURE_PATTERN = "{kind," + "|".join(FIGURE_CATEGORIES) + "}_{suite,[^_]+}_{name}.png"
# Optional: with the history rule (rules/history.smk) included, the report shows the
# stored runs, the comparison with the baseline run and the detected changes; without
# it, "no history yet". results/history/ itself is read, not declared: the history rule
# appends to it as a side effect (see rules/history.smk).
HISTORY_INPUTS = {
    "run_info": "results/summary/run.json",
    "baseline_comparison": "results/summary/baseline_comparison.parquet",
    "regressions": "results/summary/regressions.parquet",
}


rule report:
    input:
        unpack(lambda w: HISTORY_INPUTS if workflow.is_rule("history") else {}),
        measurements=fw.raw_outputs(config),
        # The sampler table the benchmark rule writes beside each raw table.
        resources=[
            p.removesuffix(".parquet") + ".resources.parquet"
            for p in fw.raw_outputs(config)
        ],
    output:
        summary="results/summary/summary.parquet",
        verdicts="results/summary/verdicts.parquet",
        # the tables this run did not produce: empty here, filled by the onerror hook
        not_run="results/summary/not_run.json",
        provenance="results/report/provenance.json",
        html=report(
            "results/report/index.html",
            caption="../report/index.rst",
            category="Report",
            subcategory="HTML report",
        ),
        markdown=report(
            "results/report/summary.md",
            caption="../report/summary.rst",
            category="Report",
            subcategory="Summaries",
        ),
        json="results/report/summary.json",
        # every row, the history and the provenance of each input, linked from index.html
        pages=directory("results/report/pages"),
        plots=report(
            directory("results/report/plots"),
            patterns=[FIGURE_PATTERN],
            caption="../report/figure.rst",
            category=lambda w: FIGURE_CATEGORIES[w.kind],
            subcategory="{suite}",
            labels={"suite": "{suite}", "figure": "{name}"},
        ),
    log:
        "logs/report/report.log",
    conda:
        "../envs/forgebench.yaml"
    # Every core of the machine (the node's under a cluster profile): the report needs
    # every other job's output, so it runs alone at the end of the run, and it computes
    # the summaries' bootstraps and draws its figures in one worker process per thread.
    threads: get_report_threads
    resources:
        mem_mb=get_report_resource("mem_mb"),
        runtime=get_report_resource("runtime"),
    params:
        statistics=config["statistics"],
        comparisons=config["comparisons"],
        targets=config["targets"],
        seed=config["seed"],
        history_dir="results/history",
    # One console line instead of its input list (every raw table and resource table).
    message:
        "report: results/report/index.html from {} raw tables".format(
            len(fw.raw_outputs(config))
        )
    script:
        "../scripts/report.py"
