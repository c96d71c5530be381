"""Classifier sweeps over cached features: registry, splits, metrics, results.

The entry point is :func:`ssl_ser.classify.sweep.run_sweep`; ``ser classify`` is a
thin command over it. Submodules are imported on demand so that importing this
package stays cheap (no torch, no scikit-learn):

- ``registry``: classifier names -> scikit-learn pipelines (scaler fit on training rows)
- ``heads``: stacked torch heads trained together, with per-head early stopping
- ``mlp``: a torch MLP written as a scikit-learn estimator
- ``probe``: batched all-layer linear/MLP probes and the SUPERB-style weighted head
- ``search``: fitting one cell, with hyperparameter search on training speakers only
- ``splits``: preset, random, speaker, speaker-kfold, loso, cross-corpus, few-shot
- ``metrics``: UA, WA, macro-F1, per-class recall, confusion, bootstrap intervals
- ``features``: feature sources (in memory or over a cache) and feature matrices
- ``dataset``: features joined with a manifest and a label set
- ``results``: the incremental cell store and the tidy results table
- ``sweep``: the sweep itself (datasets x folds x layers x classifiers, in parallel)
- ``synthetic``: synthetic features with layer-dependent class signal (tests, benchmarks)
"""
