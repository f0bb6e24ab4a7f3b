"""The ``.albsnn`` container: framing (``header``), the spec-against-tensors checks
(``architecture``) and the writer and validating reader (``file``); spec in docs/format.md."""
