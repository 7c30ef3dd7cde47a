"""`python -m placement.cli`."""

from placement.cli.main import main

main()
