"""``python -m albsnn_compress.cli`` (the form torchrun launches)."""

from albsnn_compress.cli.main import main

main()
