"""An independent deep copy of a model, binarized (parametrized) layers included.

``copy.deepcopy`` of a module with a :mod:`torch.nn.utils.parametrize`
parametrization gives the copy the *same* generated class
(``ParametrizedConv2d``), and that class holds the ``weight`` property.
Removing the parametrization from one copy deletes the property from the shared
class, which breaks every other copy: unbinarizing a layer of the search's
working model would break the caller's model and the teacher. :func:`copy_model`
gives every parametrized module of the copy a class of its own.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils import parametrize

__all__ = ["copy_model"]

_INSTANCE_SLOTS = ("__dict__", "__weakref__")


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` that shares no class with it, so either can be (un)binarized alone."""
    duplicate = copy.deepcopy(model)
    for module in duplicate.modules():
        if parametrize.is_parametrized(module):
            shared = type(module)
            members = {key: value for key, value in shared.__dict__.items() if key not in _INSTANCE_SLOTS}
            module.__class__ = type(shared.__name__, shared.__bases__, members)
    return duplicate
