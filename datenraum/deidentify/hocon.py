"""The HOCON subset of DeidentiFHIR's configuration files (FTSnext): objects, arrays, quoted and bare
strings, `key = value` / `key : value`, dotted keys, comments, and `include required("file")` relative to
the including file. Enough to read the shipped configs; anything else is an error, not a guess."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

__all__ = ["HoconError", "load"]

_TOKEN = re.compile(
    r'\s+|#[^\n]*|//[^\n]*|(?P<str>"(?:[^"\\]|\\.)*")|(?P<punct>[{}\[\],:=()])|(?P<bare>[^\s{}\[\],:=()"#]+)'
)


class HoconError(ValueError):
    pass


def _tokens(text: str, where: Path) -> list[tuple[str, str]]:
    out = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise HoconError(f"{where}: cannot read at offset {pos}: {text[pos : pos + 20]!r}")
        pos = match.end()
        if match.group("str") is not None:
            out.append(("str", match.group("str")[1:-1].encode().decode("unicode_escape")))
        elif match.group("punct") is not None:
            out.append(("p", match.group("punct")))
        elif match.group("bare") is not None:
            out.append(("bare", match.group("bare")))
    return out


class _Parser:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.tokens = _tokens(path.read_text(encoding="utf-8"), path)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token != ("p", value)):
            raise HoconError(f"{self.path}: expected {value or 'a value'}, found {token}")
        self.i += 1
        return token

    def document(self) -> dict[str, Any]:
        result = self.object() if self.peek() == ("p", "{") else self.members(end=None)
        if self.peek() is not None:
            raise HoconError(f"{self.path}: unexpected {self.peek()} after the document")
        return result

    def object(self) -> dict[str, Any]:
        self.take("{")
        result = self.members(end="}")
        self.take("}")
        return result

    def members(self, end: str | None) -> dict[str, Any]:
        result: dict[str, Any] = {}
        while True:
            token = self.peek()
            if token is None or token == ("p", end):
                return result
            if token == ("p", ","):
                self.i += 1
                continue
            if token == ("bare", "include"):
                self.i += 1
                _merge(result, self.include())
                continue
            kind, key = self.take()
            if kind == "p":
                raise HoconError(f"{self.path}: expected a key, found {key!r}")
            if self.peek() in (("p", "="), ("p", ":")):
                self.i += 1
            elif self.peek() != ("p", "{"):
                raise HoconError(f"{self.path}: expected = or : after {key!r}")
            value = self.value()
            parts = key.split(".") if kind == "bare" else [key]
            target = result
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            if isinstance(value, dict) and isinstance(target.get(parts[-1]), dict):
                _merge(target[parts[-1]], value)
            else:
                target[parts[-1]] = value

    def include(self) -> dict[str, Any]:
        if self.peek() == ("bare", "required"):
            self.i += 1
            self.take("(")
            kind, name = self.take()
            self.take(")")
        else:
            kind, name = self.take()
        if kind != "str":
            raise HoconError(f"{self.path}: include needs a quoted file name")
        target = (self.path.parent / name).resolve()
        if not target.is_file():
            raise HoconError(f"{self.path}: included file {name} does not exist")
        return _Parser(target).document()

    def value(self) -> Any:
        token = self.peek()
        if token == ("p", "{"):
            return self.object()
        if token == ("p", "["):
            self.take("[")
            items = []
            while self.peek() != ("p", "]"):
                if self.peek() == ("p", ","):
                    self.i += 1
                    continue
                items.append(self.value())
            self.take("]")
            return items
        kind, text = self.take()
        if kind == "p":
            raise HoconError(f"{self.path}: expected a value, found {text!r}")
        return text


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def load(path: Path | str) -> dict[str, Any]:
    return _Parser(Path(path)).document()
