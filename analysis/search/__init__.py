"""Search: the best recipes under a budget (`headroom search`).

`space.py` declares what a trial chooses and maps it to a Recipe; `objectives.py` the metric, the
costs (size; latency predicted from counted FLOPs) and the target; `study.py` the Optuna study
(NSGA-II or TPE, kept in the results store's SQLite file, resumable by name); `front.py` the
measured front and the uniform recipes it is compared with; `run.py` ties them to an Evaluator.
"""
