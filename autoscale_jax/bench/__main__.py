"""``python -m autoscale_jax.bench``: the ``autoscale-jax`` command line (:mod:`.cli`)."""

import sys

from autoscale_jax.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
