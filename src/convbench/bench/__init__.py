"""``convbench bench``: re-runnable speed figures for the claim that convbench trains fast.

One process measures, interleaved so machine noise hits both sides alike, our
training step against the course notebook's, both against matrix-multiply peaks
measured in the same run; child processes measure the cache stage's speed and
peak memory against the notebook's way of loading images. See :mod:`.run`.
"""
