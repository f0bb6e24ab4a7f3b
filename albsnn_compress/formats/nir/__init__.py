"""NIR export and import (docs/nir.md). The ``nir`` library is optional: ``optional`` is the
only module of this folder that the rest of the package imports without it."""
