#!/usr/bin/env bash
# System packages the test suite needs (none yet beyond Python itself).
# Later: PostgreSQL server for the SQL adapter tests, Chromium for the HTML safety test.
set -euo pipefail
exit 0
