"""Prompt templates: readable text files with named sections and ``{placeholders}``.

A template file holds sections, each opened by a line ``### <name>``; text before the first
section is a description and is ignored. Placeholders use :meth:`str.format` syntax (write
``{{`` and ``}}`` for literal braces). The shipped templates live in ``streamvlm/prompts/``;
users can pass their own file with the same sections and placeholders.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ...errors import ConfigError

_HEADER = "### "


@dataclass(frozen=True)
class PromptTemplate:
    """Named text sections with ``{placeholders}``; ``source`` names the file in error messages."""

    source: str
    sections: dict[str, str]

    @classmethod
    def parse(cls, text: str, source: str) -> PromptTemplate:
        sections: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in text.splitlines():
            if line.startswith(_HEADER):
                name = line[len(_HEADER):].strip()
                if not name or name in sections:
                    raise ConfigError(f"{source}: empty or repeated section header {line!r}")
                current = sections[name] = []
            elif current is not None:
                current.append(line)
        if not sections:
            raise ConfigError(f"{source}: no '### <section>' headers found")
        return cls(source, {k: "\n".join(v).strip() for k, v in sections.items()})

    def placeholders(self, section: str) -> set[str]:
        """The field names used in ``section``."""
        return {f for _, f, _, _ in string.Formatter().parse(self.section(section)) if f is not None}

    def section(self, name: str) -> str:
        try:
            return self.sections[name]
        except KeyError:
            raise ConfigError(f"{self.source}: missing section '### {name}' (has {sorted(self.sections)})") from None

    def require(self, spec: dict[str, set[str]]) -> PromptTemplate:
        """Check that every section in ``spec`` exists and uses only the placeholders allowed for it."""
        for name, allowed in spec.items():
            unknown = self.placeholders(name) - allowed
            if unknown:
                raise ConfigError(f"{self.source}: section '{name}' uses unknown placeholders {sorted(unknown)}; "
                                  f"available: {sorted(allowed)}")
        return self

    def render(self, section: str, **values: object) -> str:
        """``section`` with its placeholders filled from ``values``."""
        try:
            return self.section(section).format(**values)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"{self.source}: cannot fill section '{section}': {exc!r}") from None


def load_prompt(name_or_path: str | Path) -> PromptTemplate:
    """A shipped template by name (``"refine_narration"``) or a template file by path."""
    path = Path(name_or_path)
    if path.suffix == ".txt" or path.exists():
        if not path.is_file():
            raise ConfigError(f"prompt file {path} does not exist")
        return PromptTemplate.parse(path.read_text(encoding="utf-8"), str(path))
    resource = resources.files("streamvlm").joinpath("prompts", f"{name_or_path}.txt")
    if not resource.is_file():
        raise ConfigError(f"no shipped prompt named {name_or_path!r}")
    return PromptTemplate.parse(resource.read_text(encoding="utf-8"), f"streamvlm/prompts/{name_or_path}.txt")
