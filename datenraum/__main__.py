"""`python -m datenraum`: the `datenraum` command, for child processes started with this interpreter."""

from datenraum.cli import main

main()
