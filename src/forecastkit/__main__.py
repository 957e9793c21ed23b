"""``python -m forecastkit``: the same as the ``forecastkit`` command (:mod:`forecastkit.cli`)."""

import sys

from forecastkit.cli import main

sys.exit(main())
