"""A Griffe extension for the docs site (mkdocs.yml): the package's docstrings use two reStructuredText habits
that Markdown would show as they are. A role becomes a code span (``:class:`~evolink_async.Task``` shows
``Task``, as Sphinx does; ``:meth:`AsyncClient.wait``` shows ``AsyncClient.wait``), and a paragraph ending in
``::`` before a literal block ends in ``:`` (the indented block is code in both). Nothing else changes:
double backticks are code in Markdown too."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|meth|func|mod|attr|exc|data|obj):`(?P<target>[^`]+)`")
LITERAL_INTRO = re.compile(r"(?<=\S)::$", re.MULTILINE)


def _code_span(match: re.Match[str]) -> str:
    target = match["target"]
    return f"`{target[1:].rsplit('.', 1)[-1]}`" if target.startswith("~") else f"`{target}`"


def markdown_from_rst(text: str) -> str:
    return LITERAL_INTRO.sub(":", ROLE.sub(_code_span, text))


class RstToMarkdown(griffe.Extension):
    # When the object is made, before anything parses its docstring (griffe_fieldz adds its fields to it).
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_from_rst(obj.docstring.value)
