"""MLflow for every stage, in one package with no import cycle.

- :mod:`.store`: where the store is, its experiment, the server check, run tags, model registration.
- :mod:`.runlog`: :class:`~.runlog.RunLogger`, the run logging of train, evaluate and report, which spools
  calls to disk while the server is away; ``sync`` sends them later.
- :mod:`.queries`: finished runs read back for the report.

``python -m convbench.tracking`` (``convbench tracking``) creates the store; ``... sync`` sends spooled calls.
"""
