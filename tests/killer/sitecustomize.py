"""Put on PYTHONPATH with ``CONVBENCH_KILL_AFTER_EPOCH=N``: every Python process of the run (torchrun's workers too)
SIGKILLs itself right after writing the checkpoint of epoch N, as a power cut would, without a hook in the product.
"""

import os

_EPOCH = os.environ.get("CONVBENCH_KILL_AFTER_EPOCH")
if _EPOCH:
    import signal

    from convbench.training import run

    _save = run.save_checkpoint

    def _save_then_die(path, state, *rest):  # type: ignore[no-untyped-def]
        _save(path, state, *rest)
        if state["epoch"] == int(_EPOCH):
            os.kill(os.getpid(), signal.SIGKILL)

    run.save_checkpoint = _save_then_die
