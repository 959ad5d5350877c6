"""DVC stage entry points: each module is a thin ``main()`` that reads params.yaml and calls a pure function.

Run one as ``python -m convbench.stages.<name> [args]``; :func:`convbench.errors.run_stage`
turns a :class:`~convbench.errors.ConvbenchError` into one error line and exit status 2.
"""
