"""Read a YAML file into plain data, remembering the line of every key.

PyYAML alone forgets where a value came from, accepts duplicate keys and expands alias bombs.
This composes the node graph (cheap, aliases stay shared) and converts it ourselves, so every
validation message can name the file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gallery.errors import ConfigError

Path_ = tuple  # a location in the document: keys and list indexes from the top

MAX_NODES = 100_000  # far above any real prompts.yaml, far below what an alias bomb expands to
MAX_DEPTH = 50


class Located:
    """Plain data plus the line (1-based) at which each path starts."""

    def __init__(self, data: Any, lines: dict[tuple, int]):
        self.data = data
        self.lines = lines

    def line(self, path: tuple) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)


def load_yaml(path: Path) -> Located:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"byte 0x{raw[err.start]:02x} is not valid UTF-8", line=line,
                          hint="save the file as UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip() or all(l.strip().startswith("#") or not l.strip() for l in text.splitlines()):
        raise ConfigError("the file is empty", line=1,
                          hint="list at least one axis under 'axes:' (see the README)")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "invalid YAML"
        hint = None
        bad_line = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
        if "\t" in bad_line or "\\t" in problem:
            hint = "indent with spaces, not tabs"
        raise ConfigError(f"YAML syntax error: {problem}", line=mark.line + 1 if mark else None,
                          hint=hint) from None
    except yaml.YAMLError as err:  # e.g. an unknown tag or a non-printable character
        raise ConfigError(f"YAML error: {err}".splitlines()[0]) from None
    if node is None:
        raise ConfigError("the file is empty", line=1)
    lines: dict[tuple, int] = {(): node.start_mark.line + 1}
    budget = [MAX_NODES]
    data = _convert(node, (), lines, budget, 0)
    return Located(data, lines)


_constructor = yaml.constructor.SafeConstructor()


def _convert(node: yaml.Node, path: tuple, lines: dict, budget: list[int], depth: int) -> Any:
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        raise ConfigError("the document is too large or too deeply nested (an alias bomb?)",
                          line=node.start_mark.line + 1, key=_dotted(path) or None,
                          hint="remove YAML anchors/aliases that refer to each other")
    if isinstance(node, yaml.ScalarNode):
        try:
            value = _constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as err:
            raise ConfigError(f"cannot read this value: {err.problem}", line=node.start_mark.line + 1,
                              key=_dotted(path) or None) from None
        if isinstance(value, str) and any("\ud800" <= c <= "\udfff" for c in value):
            # "\ud83d\udc31" escapes arrive as two surrogate halves: join them; refuse a lone half
            try:
                value = value.encode("utf-16", "surrogatepass").decode("utf-16")
            except UnicodeDecodeError:
                raise ConfigError("broken \\u escape (half of a surrogate pair)", line=node.start_mark.line + 1,
                                  key=_dotted(path) or None, hint="write the character itself") from None
        return value
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, child in enumerate(node.value):
            lines[path + (i,)] = child.start_mark.line + 1
            items.append(_convert(child, path + (i,), lines, budget, depth + 1))
        return items
    if isinstance(node, yaml.MappingNode):
        try:
            _constructor.flatten_mapping(node)  # resolves '<<' merge keys
        except yaml.constructor.ConstructorError as err:
            raise ConfigError(f"bad merge key: {err.problem}", line=node.start_mark.line + 1) from None
        result: dict = {}
        first_line: dict = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError("a key must be plain text, not a list or mapping",
                                  line=key_node.start_mark.line + 1, key=_dotted(path) or None)
            key = _constructor.construct_object(key_node)
            if key is None:
                key = "null"
            if not isinstance(key, str):
                key = str(key).lower() if isinstance(key, bool) else str(key)
            line = key_node.start_mark.line + 1
            if key in result:
                raise ConfigError(f"duplicate key '{key}' (first at line {first_line[key]})", line=line,
                                  key=_dotted(path + (key,)), hint="each key may appear once")
            first_line[key] = line
            lines[path + (key,)] = line
            result[key] = _convert(value_node, path + (key,), lines, budget, depth + 1)
        return result
    raise ConfigError("unsupported YAML node", line=node.start_mark.line + 1)


def _dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


dotted = _dotted
