"""Subcommands of the ``streamvlm`` CLI, one module each (see :mod:`streamvlm.cli`)."""
