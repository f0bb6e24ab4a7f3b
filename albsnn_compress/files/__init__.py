"""Reading and writing files safely: atomic writes, complete output sets, output paths that
refuse to clobber, strict JSON, telling a file's kind from its first bytes, and the limits a
reader measures a model against before it allocates anything."""
