"""The way in: networks trained in other frameworks, as :class:`~albsnn_compress.snn.spec.SpikingNet` models.

:func:`from_snntorch` and :func:`from_spikingjelly` read a live ``nn.Sequential``, or a
model class whose ``forward()`` loops over time, traced (:mod:`.trace`) (the framework must
be installed: ``pip install 'albsnn-compress[interop]'``; SpikingJelly with ``--no-deps``).
Each refuses, in one line naming the module or construct, anything it cannot reproduce
exactly; docs/interop.md has the mapping tables and a tutorial.
"""

from albsnn_compress.interop.snntorch_import import from_snntorch
from albsnn_compress.interop.spikingjelly_import import from_spikingjelly

__all__ = ["from_snntorch", "from_spikingjelly"]
