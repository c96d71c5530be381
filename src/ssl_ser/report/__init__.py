"""Layer-wise probing reports: figures and tables from ``ser classify`` results.

``write_report(results_dir, output_html)`` reads the results table(s) (and the
stored predictions), draws the figures into ``figures/`` beside the HTML file
and writes a self-contained ``report.html`` plus ``report.md``. Importing this
package imports pandas but neither matplotlib nor torch; matplotlib loads when
figures are drawn.

What the report promises:

- A folder may be a ``ser classify`` output or a ``ser probe``/``ser run``
  output (its ``results/`` or ``<variant>/results/`` folders are read).
- A cell given twice (same ``cell_id``) is counted once and the header says so;
  one id with different numbers, or one cell and fold under two ids, is refused.
- Numbers are compared only within a comparable group (label set, split,
  speaker norm, search, seed; see ``groups``): every table, figure and headline
  holds one group and names it; pooling is named on every row and line.
- A classifier that predicted one class for a whole test fold (counted from
  the stored predictions) is marked collapsed in tables and figures, and the
  header suggests ``--speaker-norm``.
- Beside a 95% bootstrap interval stands the pooled number it belongs to; the
  mean ± std over folds is labelled as such.
- Fine-tuned models (``ser finetune`` rows, classifier ``finetune``) are put
  beside the probe layer chosen on training speakers, the best-by-test layer
  (labelled optimistic) and the last layer, fold by fold on the same speakers,
  with their training curves and learned layer weights (see ``finetune``); the
  section is left out when nothing was fine-tuned.
- "Untrained" is decided from what the model is, not from its name: the
  toolkit writes ``ssl_ser_random_weights.json`` beside weights it initialises
  at random (``ser demo``, the test models), extraction records the folder's
  revision as ``untrained:local:<fingerprint>`` in the cache key, and the
  results carry the keys (see ``load``).

Submodules:

- ``load``: read, normalise and deduplicate results tables and predictions
- ``groups``: the comparable groups of cells
- ``tables``: fold aggregates, best cells, pooled scores and bootstrap intervals, table text
- ``figures``: the matplotlib figures (saved as PNG and SVG)
- ``finetune``/``finetune_figures``: fine-tuned vs probes, training curves, layer weights
- ``document``: the report as plain data
- ``html``/``markdown``: the two renderers
- ``build``: :func:`write_report`
"""

from ssl_ser.report.build import ReportSummary, build_document, write_report

__all__ = ["ReportSummary", "build_document", "write_report"]
