"""Read a YAML file into plain data, remembering the line of every key.

PyYAML alone forgets where a value came from, accepts duplicate keys and expands alias bombs.
This composes the node graph (cheap, aliases stay shared) and converts it ourselves, so every
validation message can name the file and line.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import yaml

from gallery.errors import ConfigError

MAX_NODES = 100_000  # far above any real prompts.yaml, far below what an alias bomb expands to
MAX_TEXT = 10_000_000  # characters of text once aliases are expanded: one long string aliased many times
MAX_DEPTH = 50
MERGE = "tag:yaml.org,2002:merge"


class Located:
    """Plain data plus the line (1-based) at which each path starts.

    `texts` keeps the source text of every number and date, so that a revision `0123456` or a prompt
    `1.10` can be read back as written rather than as YAML's 42798 or 1.1.
    """

    def __init__(self, data: Any, lines: dict[tuple, int], texts: dict[tuple, str] | None = None):
        self.data = data
        self.lines = lines
        self.texts = texts or {}

    def line(self, path: tuple) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)


def load_yaml(path: Path) -> Located:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read the file: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"byte 0x{raw[err.start]:02x} is not valid UTF-8", line=line, hint="save the file as UTF-8"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if all(not line.strip() or line.strip().startswith("#") for line in text.splitlines()):
        raise ConfigError("the file is empty", line=1, hint="list at least one axis under 'axes:' (see the README)")
    try:
        _check_depth(text)  # before composing: PyYAML's composer recurses once per level
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        raise _syntax_error(err, text) from None
    except yaml.reader.ReaderError as err:  # a control character such as U+0007
        raise ConfigError(
            f"character U+{err.character:04X} is not allowed in YAML",
            line=text[: err.position].count("\n") + 1,
            hint='delete it, or write it as an escape inside double quotes, e.g. "\\x07"',
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"YAML error: {err}".splitlines()[0], line=1) from None
    if node is None:
        raise ConfigError("the file is empty", line=1)
    converter = _Converter()
    converter.lines[()] = node.start_mark.line + 1
    data = converter.convert(node, (), 0)
    return Located(data, converter.lines, converter.texts)


def _check_depth(text: str) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(
                    f"nested more than {MAX_DEPTH} levels deep",
                    line=event.start_mark.line + 1 if event.start_mark else None,
                    hint="a prompts.yaml needs a handful of levels; close the brackets you opened",
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _syntax_error(err: yaml.MarkedYAMLError, text: str) -> ConfigError:
    mark = err.problem_mark or err.context_mark
    problem = err.problem or err.context or "invalid YAML"
    lines = text.splitlines()
    bad_line = lines[mark.line] if mark and mark.line < len(lines) else ""
    context = err.context or ""
    opened = err.context_mark.line + 1 if err.context_mark else None
    if "\t" in bad_line or "\\t" in problem:
        hint = "indent with spaces, not tabs"
    elif "quoted scalar" in context:
        hint = f"close the quote opened at line {opened}"
    elif "flow sequence" in context or "flow mapping" in context:
        hint = f"close the '{'[' if 'sequence' in context else '{'}' opened at line {opened}"
    elif "mapping values are not allowed" in problem:
        hint = 'a value that holds ": " needs quotes, e.g. key: "a cat: wearing a hat"; else check the indentation'
    elif "<block end>" in problem:
        hint = f"check the indentation: the keys of one mapping line up (this one starts at line {opened})"
    elif "another document" in problem:
        hint = "keep one document: remove the '---' line"
    elif context and opened and mark and opened != mark.line + 1:
        hint = f"{context} that starts at line {opened}"
    else:
        hint = None
    return ConfigError(f"YAML syntax error: {problem}", line=mark.line + 1 if mark else 1, hint=hint)


class _Converter:
    """Nodes -> plain data, counting nodes (alias bombs) and levels (recursive aliases)."""

    def __init__(self):
        self.constructor = yaml.constructor.SafeConstructor()
        self.lines: dict[tuple, int] = {}
        self.texts: dict[tuple, str] = {}
        self.budget = MAX_NODES
        self.text_budget = MAX_TEXT

    def convert(self, node: yaml.Node, path: tuple, depth: int) -> Any:
        self.budget -= 1
        if self.budget < 0 or depth > MAX_DEPTH:
            where = path[:2]  # the section and key that hold it, not the path 50 aliases deep
            raise ConfigError(
                "the document is too large or too deeply nested (an alias bomb?)",
                line=self.lines.get(where, node.start_mark.line + 1),
                key=dotted(where) or None,
                hint="remove YAML anchors/aliases that refer to each other",
            )
        line = node.start_mark.line + 1
        if node.tag not in self.constructor.yaml_constructors:  # !!python/object and other unknown tags
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise ConfigError(
                f"cannot read this value: unknown tag {tag!r}",
                line=line,
                key=dotted(path) or None,
                hint="remove the tag",
            )
        if isinstance(node, yaml.ScalarNode):
            self.text_budget -= len(node.value)
            if self.text_budget < 0:
                where = path[:2]
                raise ConfigError(
                    f"the document expands to more than {MAX_TEXT:,} characters of text (an alias bomb?)",
                    line=self.lines.get(where, node.start_mark.line + 1),
                    key=dotted(where) or None,
                    hint="write long text once, without aliasing it many times",
                )
            try:
                value = self.constructor.construct_object(node, deep=True)
            except Exception as err:  # a bad !!tag, a date like 2001-13-45, a 5000-digit number
                problem = (
                    err.problem
                    if isinstance(err, yaml.constructor.ConstructorError)
                    else str(err).split(";")[0]
                    if isinstance(err, ValueError)
                    else f"not a valid {node.tag.rpartition(':')[2]}"
                )
                raise ConfigError(
                    f"cannot read this value: {problem}",
                    line=line,
                    key=dotted(path) or None,
                    hint="put it in quotes to keep it as text",
                ) from None
            if isinstance(value, str):
                return _join_surrogates(value, line, path)
            if isinstance(value, (int, float, datetime.date)) and not isinstance(value, bool):
                self.texts[path] = node.value
            return value
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, child in enumerate(node.value):
                self.lines[path + (i,)] = child.start_mark.line + 1
                items.append(self.convert(child, path + (i,), depth + 1))
            return items
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path, depth)
        raise ConfigError("unsupported YAML node", line=line)

    def mapping(self, node: yaml.MappingNode, path: tuple, depth: int) -> dict:
        result: dict = {}
        # '<<: *base' merges come first; keys written here override them (but not each other)
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        raise ConfigError(
                            "'<<' merges mappings only",
                            line=source.start_mark.line + 1,
                            key=dotted(path) or None,
                            hint="write <<: *name, where &name is a mapping",
                        )
                    for key, value in self.convert(source, path, depth + 1).items():
                        result.setdefault(key, value)
        first_line: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:
                continue
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(
                    "a key must be plain text, not a list or mapping", line=line, key=dotted(path) or None
                )
            key = _join_surrogates(key_node.value, line, path)  # as written: `01` stays "01", `yes` stays "yes"
            if not key.strip() or not key.isprintable():
                raise ConfigError(
                    "empty key" if not key.strip() else f"the key {key!r} holds a control character",
                    line=line,
                    key=dotted(path) or None,
                    hint="a key is plain text on one line",
                )
            if key in first_line:
                raise ConfigError(
                    f"duplicate key '{key}' (first at line {first_line[key]})",
                    line=line,
                    key=dotted(path + (key,)),
                    hint="each key may appear once",
                )
            first_line[key] = line
            self.lines[path + (key,)] = line
            result[key] = self.convert(value_node, path + (key,), depth + 1)
        return result


def _join_surrogates(value: str, line: int, path: tuple) -> str:
    """ "\\ud83d\\udc31" escapes arrive as two surrogate halves: join them; refuse a lone half."""
    if not any("\ud800" <= c <= "\udfff" for c in value):
        return value
    try:
        return value.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        raise ConfigError(
            "broken \\u escape (half of a surrogate pair)",
            line=line,
            key=dotted(path) or None,
            hint="write the character itself",
        ) from None


def dotted(path: tuple) -> str:
    """A location in the document as the message names it: render.steps, axes.style[2]."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
