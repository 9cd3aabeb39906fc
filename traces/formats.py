"""Reading and writing trace files: JSON Lines and JSON arrays, streamed.

Readers yield one `Record` per document with the line it starts on, so an
import of any size runs in constant memory and can name bad lines.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Literal

import orjson

Format = Literal["jsonl", "json"]
CHUNK_BYTES = 1024 * 1024
_WHITESPACE = " \t\r\n"


@dataclass(frozen=True, slots=True)
class Record:
    """One document read from a file: its value, or why it could not be read."""

    line: int
    value: Any = None
    error: str | None = None


class NonStandardConstant:
    """`NaN`, `Infinity` or `-Infinity` as Python's json module reads them.

    They are not JSON (orjson, which reads JSON Lines and API bodies, rejects
    them), so the array reader must not turn them into floats that would be
    stored (or, on SQLite, silently dropped). This stand-in is no string, number
    or plain JSON value, so the validator rejects the trace naming the field.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def detect_format(name: str, head: bytes) -> Format:
    """`.jsonl`/`.ndjson` are JSON Lines; otherwise a leading `[` means a JSON array."""
    lowered = name.lower()
    if lowered.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"[":
        return "json"
    return "jsonl"


def read_records(stream: IO[bytes], fmt: Format, max_bytes: int) -> Iterator[Record]:
    if fmt == "jsonl":
        return read_jsonl(stream, max_bytes)
    return read_json_array(stream, max_bytes)


def read_jsonl(stream: IO[bytes], max_bytes: int) -> Iterator[Record]:
    """One JSON document per line; blank lines are skipped."""
    line_no = 0
    while True:
        raw = stream.readline(max_bytes + 2)
        if not raw:
            return
        line_no += 1
        if len(raw) > max_bytes + 1 or (len(raw) == max_bytes + 1 and not raw.endswith(b"\n")):
            # Too long: skip the rest of this line without holding it in memory.
            while raw and not raw.endswith(b"\n"):
                raw = stream.readline(CHUNK_BYTES)
            yield Record(line_no, error=f"Trace exceeds TRACE_MAX_BYTES ({max_bytes:,} bytes).")
            continue
        if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip():
            continue
        try:
            yield Record(line_no, orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            yield Record(line_no, error=f"Malformed JSON: {exc}")


def read_json_array(stream: IO[bytes], max_bytes: int) -> Iterator[Record]:
    """The elements of one top-level JSON array, decoded incrementally.

    A malformed element cannot be skipped reliably inside an array, so it is
    reported and reading stops there.
    """
    decoder = json.JSONDecoder(parse_constant=NonStandardConstant)
    utf8 = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
    buf = ""
    pos = 0
    line = 1
    eof = False

    def fill() -> bool:
        nonlocal buf, pos, eof
        if eof:
            return False
        chunk = stream.read(CHUNK_BYTES)
        if not chunk:
            eof = True
            buf = buf[pos:] + utf8.decode(b"", final=True)
        else:
            buf = buf[pos:] + utf8.decode(chunk)
        pos = 0
        return True

    def skip_ws() -> bool:
        nonlocal pos, line
        while True:
            while pos < len(buf) and buf[pos] in _WHITESPACE:
                if buf[pos] == "\n":
                    line += 1
                pos += 1
            if pos < len(buf):
                return True
            if not fill():
                return False

    try:
        if not skip_ws() or buf[pos] != "[":
            yield Record(line, error="Expected a JSON array of traces ('[' ...).")
            return
        pos += 1
        expect_value = True
        while True:
            if not skip_ws():
                yield Record(line, error="Unexpected end of file: the JSON array is not closed.")
                return
            if buf[pos] == "]":
                return
            if not expect_value:
                if buf[pos] != ",":
                    yield Record(line, error="Expected ',' or ']' between array elements.")
                    return
                pos += 1
                expect_value = True
                continue
            start_line = line
            while True:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as exc:
                    # Possibly just cut at the chunk edge: read more and retry,
                    # unless the element is already larger than any trace may be.
                    if len(buf) - pos <= 4 * max_bytes + 16 and fill():
                        continue
                    yield Record(
                        start_line + exc.lineno - 1,
                        error=f"Malformed JSON: {exc.msg}; the rest of the file was not read.",
                    )
                    return
            size = end - pos
            if size > max_bytes // 4 and len(buf[pos:end].encode()) > max_bytes:
                yield Record(start_line, error=f"Trace exceeds TRACE_MAX_BYTES ({max_bytes:,} bytes).")
            else:
                yield Record(start_line, value)
            line += buf.count("\n", pos, end)
            pos = end
            expect_value = False
    except UnicodeDecodeError:
        yield Record(line, error="The file is not valid UTF-8; the rest of the file was not read.")


def dumps_line(document: dict[str, Any]) -> bytes:
    """One JSON Lines record (UTF-8, no ASCII escaping, newline-terminated)."""
    return orjson.dumps(document) + b"\n"


def reasoning_text(steps: list[dict[str, Any]], final_answer: str) -> str:
    """The model's side of a training example: numbered reasoning, then the answer."""
    lines = ["Reasoning:"]
    lines.extend(f"{n}. {step['content']}" for n, step in enumerate(steps, start=1))
    lines.append(f"Answer: {final_answer}")
    return "\n".join(lines)
