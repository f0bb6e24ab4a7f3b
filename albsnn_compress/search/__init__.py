"""The search: which layers an accuracy budget affords at 1 bit, decided by estimators,
finetuning and paired measurements (docs/method.md).

``compress`` and ``SearchConfig`` are importable from here (and from the package root);
everything else from its module: ``estimators`` and ``strategies`` to register new ones.
"""

from albsnn_compress.search.budget import check_budget
from albsnn_compress.search.config import SearchConfig
from albsnn_compress.search.result import CompressionResult
from albsnn_compress.search.run import compress

__all__ = ["CompressionResult", "SearchConfig", "check_budget", "compress"]
