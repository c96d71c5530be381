"""Layer-wise probing reports: figures and tables from ``ser classify`` results.

``write_report(results_dir, output_html)`` reads the results table(s) (and the
stored predictions), draws the figures into ``figures/`` beside the HTML file
and writes a self-contained ``report.html`` plus ``report.md``. Importing this
package imports pandas but neither matplotlib nor torch; matplotlib loads when
figures are drawn.

What the report promises (folders, duplicates, comparable groups, collapsed
classifiers, intervals, fine-tuned models, untrained models) is listed in
docs/report.md.

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
