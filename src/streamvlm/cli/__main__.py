"""``python -m streamvlm.cli`` (and ``torchrun ... -m streamvlm.cli``): the ``streamvlm`` command."""

from . import entry_point

entry_point()
