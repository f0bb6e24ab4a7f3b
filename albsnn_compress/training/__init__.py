"""Training and evaluation: the sliced ``Trainer``, per-image outcomes, the ``train``
command's recipe, and the torchrun process group with its synchronized batch norm."""
