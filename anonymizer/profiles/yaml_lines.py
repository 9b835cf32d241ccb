"""YAML loading that remembers line numbers, so every profile error names file:line."""

from __future__ import annotations

from typing import Any

import yaml

from anonymizer.errors import ProfileError


class LineDict(dict):
    """A mapping from YAML that knows its own line and the line of each key."""

    line: int
    key_lines: dict[Any, int]


class LineList(list):
    """A sequence from YAML that knows its own line and the line of each item."""

    line: int
    item_lines: list[int]


class _LineLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:
        mapping = LineDict()
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int):
                raise ProfileError("mapping keys must be strings",
                                   line=key_node.start_mark.line + 1)
            if key in mapping:
                raise ProfileError(f"duplicate key {key!r}", line=key_node.start_mark.line + 1)
            mapping[key] = self.construct_object(value_node, deep=True)
            mapping.key_lines[key] = key_node.start_mark.line + 1
        return mapping

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> LineList:
        items = LineList(self.construct_object(child, deep=True) for child in node.value)
        items.line = node.start_mark.line + 1
        items.item_lines = [child.start_mark.line + 1 for child in node.value]
        return items


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                            _LineLoader.construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG,
                            _LineLoader.construct_sequence)


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error becomes a :class:`ProfileError` with file:line.

    Unsafe tags (``!!python/...``) are refused, as with ``yaml.safe_load``.
    """
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except ProfileError as exc:
        raise ProfileError(exc.message, source, exc.line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ProfileError(f"invalid YAML: {problem}", source, line) from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"invalid YAML: {exc}", source) from None
