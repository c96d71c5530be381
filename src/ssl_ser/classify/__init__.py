"""Classifier sweeps over cached features: registry, splits, metrics, results.

The entry point is :func:`ssl_ser.classify.sweep.run_sweep`; ``ser classify`` is a
thin command over it. Submodules (each one's docstring says what it holds) are
imported on demand so that importing this package stays cheap (no torch, no
scikit-learn).
"""
