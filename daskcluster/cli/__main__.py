"""``python -m daskcluster.cli``."""
from daskcluster.cli.main import main

main()
