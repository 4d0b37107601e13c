"""``python -m convcli``."""

from .cli import main

main(prog_name="convcli")
