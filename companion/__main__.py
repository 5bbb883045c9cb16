"""``python -m companion``: the command line (see ``companion.cli``)."""

from .cli import main

if __name__ == "__main__":
    main()
