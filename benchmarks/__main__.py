"""``python -m benchmarks`` runs every benchmark (see `benchmarks.run_all`)."""

import sys

from benchmarks.run_all import main

sys.exit(main())
