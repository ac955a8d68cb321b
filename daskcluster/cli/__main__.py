"""``python -m daskcluster.cli``."""

from daskcluster.cli.commands import main

main()
