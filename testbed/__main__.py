"""`python -m testbed`: the testbed's command line (a development tool, not in the product wheel)."""

from testbed.cli import main

main()
