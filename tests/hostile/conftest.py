"""Fixtures of the hostile suite: the command tests' tiny checkpoint, short clip and CLI runner."""

from tests.commands.conftest import cli, short_clip, tiny_checkpoint  # noqa: F401 - fixtures, shared
