"""``python -m benchmarks.scaling`` (see :mod:`benchmarks.scaling`)."""

from benchmarks.scaling.cli import main

if __name__ == "__main__":
    main()
