"""``python -m neurodecode`` runs the command line."""

from .cli import main

main()
