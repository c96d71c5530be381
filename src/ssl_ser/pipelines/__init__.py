"""Named experiment pipelines built from the stages: probe, experiment files, the offline demo.

- ``experiment``: experiment files (YAML/TOML) validated into settings models
- ``plan``: what a run will do (manifests, cache states, sweeps, cells): ``--dry-run``
- ``run``: :func:`~ssl_ser.pipelines.run.run_experiment`, resumable
- ``quick``: ``ser probe``'s command line as an experiment
- ``demo``: ``ser demo``: synthetic corpus, untrained model, full pipeline

Importing this package is cheap; torch and transformers load only when a model runs.
"""
