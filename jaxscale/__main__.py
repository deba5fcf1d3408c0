"""``python -m jaxscale`` runs the command-line interface."""

from jaxscale.cli import main

raise SystemExit(main())
