"""The C99 export for microcontrollers: the plan of kernel calls and arena (``plan``), per-op
C (``ops``), the folder's files (``source``, ``templates/``) and the writer (``export``);
docs/deploy.md."""
