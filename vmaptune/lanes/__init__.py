"""Lanes: one lane's training and the population that vmaps it.

- ``train``: one lane's init, training segment and evaluation of any objective;
- ``alone``: one configuration trained alone (the final fit, the equivalence tests);
- ``population``: the vmapped, sharded, chunked programs over the lane axis;
- ``chunks``: chunk layout and memory fitting;
- ``devices``: the lane mesh, CPU devices and host transfers;
- ``compilation``: compiler options, compile counting, the persistent cache;
- ``keys``: a round's shared keys and seed replicas;
- ``events``: training reported in pieces to a listener;
- ``distributed``, ``watchdog``: several processes, and stopping them all when one fails.
"""

# What a script calls directly: vt.lanes.devices.configure_cpu_devices(),
# vt.lanes.compilation.persistent_cache().
from vmaptune.lanes import compilation, devices

__all__ = ["compilation", "devices"]
