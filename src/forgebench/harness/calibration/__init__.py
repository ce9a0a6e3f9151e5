"""The parts of ``harness/statistics_calibration`` (see that module for what and why).

* ``figures``: how a figure becomes rows (a proportion with its Clopper-Pearson interval,
  censored quantiles of delays) and how every scenario gets its own seed;
* ``synthetic``: the seeded samples and run histories;
* ``comparisons``, ``coverage``, ``histories``, ``anchors``: the four parts of the suite;
* ``otava_runner``: Apache Otava's detection, run by its own environment's interpreter.
"""
