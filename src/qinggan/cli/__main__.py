"""``python -m qinggan.cli``."""

from . import main

main()
