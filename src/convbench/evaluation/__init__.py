"""Evaluation of trained families, the comparison report, and prediction on image files.

- :mod:`.evaluate`: the ``evaluate`` stage (metrics, per-image predictions, speed).
- :mod:`.stats`: percentile bootstrap and McNemar's exact test.
- :mod:`.report`, :mod:`.discussion`, :mod:`.markdown`: reports/comparison.md, facts worded by
  ``templates/comparison.md.j2`` (figures: :mod:`convbench.figures`).
- :mod:`.results`, :mod:`.provenance`, :mod:`.studies`: what the report reads (files, dvc.lock/git, reports/runs.json).
- :mod:`.predict`: ``convbench predict``.
"""
