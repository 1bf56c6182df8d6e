"""``python -m novaconsole``: the same as the ``novaconsole`` command."""

from novaconsole.cli import main

if __name__ == "__main__":
    main()
