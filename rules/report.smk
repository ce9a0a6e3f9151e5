# Summary statistics, verdicts, plots and the HTML report from every raw table.


rule report:
    input:
        measurements=fw.raw_outputs(config),
    output:
        summary="results/summary/summary.parquet",
        verdicts="results/summary/verdicts.parquet",
        provenance="results/report/provenance.json",
        html=report(
            "results/report/index.html",
            caption="../report/index.rst",
            category="Report",
        ),
        plots=report(
            directory("results/report/plots"),
            patterns=["{name}.png"],
            caption="../report/latency_cdf.rst",
            category="Latency",
        ),
    log:
        "logs/report/report.log",
    conda:
        "../envs/forgebench.yaml"
    threads: 1
    resources:
        mem_mb=get_report_resource("mem_mb"),
        runtime=get_report_resource("runtime"),
    params:
        statistics=config["statistics"],
        comparisons=config["comparisons"],
        targets=config["targets"],
        seed=config["seed"],
    script:
        "../scripts/report.py"
