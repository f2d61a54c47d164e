"""Incremental parser for a streamed JSON array: each element comes out the moment it closes.

A batch reply is a JSON array of per-agent plans::

    [{"agent_id": 2, "steps": [{"act": "MoveTo", "x": 3, "y": 2}]}, {"agent_id": 5, ...}]

Feed the text as it streams (:meth:`JsonArrayStreamParser.feed`, ``str`` or ``bytes`` chunks
split anywhere, even inside a UTF-8 sequence) and get back :class:`ParsedElement` /
:class:`ElementError` events for every top-level element completed by that chunk; call
:meth:`JsonArrayStreamParser.finish` when the stream ends. The events for a given reply are
the same however it is split.

Envelope, as documented for the model: the reply is a bare JSON array. Tolerated as well:

- leading junk before the array: prose, a `````json`` fence, ``<think>...</think>`` blocks.
  The first ``[`` of a reply (after whitespace, think blocks and a fence opener) opens the
  array whatever follows; after other text a ``[`` only opens it when the next non-space
  character is ``{`` or ``]`` (our elements are objects), so a bracket in prose such as
  ``[sic]`` is skipped;
- the object envelope ``{"plans": [...]}`` (key ``plans``), whose array is parsed the same way;
- a single bare object instead of an array, reported as element 0;
- anything after the closing ``]`` (a closing fence, a trailing ``}``) is ignored.

Elements are scanned with a bracket/string-aware lexer (strings may contain braces, brackets
and escaped quotes) and decoded with :mod:`json` (control characters inside strings allowed);
an element that fails gets one repair (trailing commas removed) and is otherwise reported as
an :class:`ElementError` with its raw text. Scanning goes on after it, so a broken element
does not cost the good ones after it. A missing comma between elements is tolerated. The
parser never raises: internal trouble becomes ``problem``.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeAlias

log = logging.getLogger(__name__)

_DECODER = json.JSONDecoder(strict=False)
_WS = " \t\r\n"
_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"
_FENCE = "```"
_ENVELOPE_KEYS = ("plans",)
# JSON's own whitespace only, as _skip_ws: with \s (which also matches U+2028, \v ...) a
# streamed reply could be read as an envelope or not depending on where it was split.
_ENVELOPE = re.compile(r'\{[ \t\r\n]*"(' + "|".join(_ENVELOPE_KEYS) + r')"[ \t\r\n]*:[ \t\r\n]*\[')
# Outside strings inside an element, the only characters that matter:
_STRUCT = re.compile(r'[{}\[\]"]')
# Inside a string: its end or an escape.
_IN_STRING = re.compile(r'["\\]')
# End of a scalar element (number, true, false, null).
_SCALAR_END = re.compile(r"[,\]}\s]")
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


@dataclass(frozen=True, slots=True)
class ParsedElement:
    """Element ``index`` of the array decoded to ``value``; ``raw`` is its exact text."""

    index: int
    value: Any
    raw: str
    repaired: bool = False
    """True when it only decoded after removing trailing commas."""


@dataclass(frozen=True, slots=True)
class ElementError:
    """Element ``index`` could not be decoded (or was cut off): ``raw`` and why."""

    index: int
    raw: str
    message: str


StreamEvent: TypeAlias = ParsedElement | ElementError


class _Mode(Enum):
    SEEK = "seek"  # before the array: junk, fences, think blocks
    EXPECT = "expect"  # inside the array, before an element
    ELEMENT = "element"  # inside an element
    AFTER = "after"  # after an element, before ',' or ']'
    DONE = "done"  # array closed (or single bare object parsed)


class JsonArrayStreamParser:
    """Feed chunks, get elements as they close. One instance per reply; not thread-safe."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""
        self._pos = 0
        self._mode = _Mode.SEEK
        self._index = 0
        # Element scanning state (survives across chunks).
        self._start = 0
        self._stack: list[str] = []
        self._in_string = False
        self._escape = False
        self._scalar = False
        self._bare_object = False  # element 0 is a bare top-level object, not in an array
        self._saw_array = False
        self._clean = True  # nothing but whitespace, think blocks and fences seen so far
        self.problem: str | None = None
        """Why the reply as a whole fell short (no array, truncated, ...), else None."""
        self.elements_ok = 0
        self.elements_bad = 0

    # ----------------------------------------------------------------- public

    @property
    def done(self) -> bool:
        """The array has closed; further input is ignored."""
        return self._mode is _Mode.DONE

    @property
    def text(self) -> str:
        """Everything fed so far (decoded), for logs and records."""
        return self._buf

    @property
    def started(self) -> bool:
        """The opening of the array (or of a bare object) has been seen."""
        return self._saw_array or self._bare_object

    def feed(self, chunk: str | bytes) -> list[StreamEvent]:
        """Add ``chunk`` and return the elements it completed, in order. Never raises."""
        try:
            if isinstance(chunk, bytes | bytearray):
                text = self._utf8.decode(bytes(chunk))
            elif isinstance(chunk, str):
                text = chunk
            else:
                self._set_problem(f"ignored a chunk of type {type(chunk).__name__}")
                return []
            if not text:
                return []
            self._buf += text
            return self._scan(final=False)
        except Exception as exc:  # a bug here must not take the service down
            log.exception("stream parser failed")
            self._set_problem(f"internal parser error: {exc!r}")
            self._mode = _Mode.DONE
            return []

    def finish(self) -> list[StreamEvent]:
        """The stream ended: flush what is pending (a cut-off element becomes an error) and
        set :attr:`problem` if no complete array was seen. Never raises."""
        try:
            tail = self._utf8.decode(b"", final=True)
            if tail:
                self._buf += tail
            events = self._scan(final=True)
            mode = self._mode
            if mode is _Mode.ELEMENT:
                raw = self._buf[self._start :]
                events.append(self._error(raw, "reply ended inside this element (truncated)"))
                self._set_problem("reply ended before the array closed")
            elif mode is _Mode.EXPECT or (mode is _Mode.AFTER and not self._bare_object):
                self._set_problem("reply ended before the array closed")
            elif mode is _Mode.SEEK:
                self._set_problem("no JSON array found in the reply")
            self._mode = _Mode.DONE
            return events
        except Exception as exc:
            log.exception("stream parser failed at finish")
            self._set_problem(f"internal parser error: {exc!r}")
            self._mode = _Mode.DONE
            return []

    # ----------------------------------------------------------------- scanning

    def _set_problem(self, message: str) -> None:
        if self.problem is None:
            self.problem = message

    def _scan(self, *, final: bool) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        buf = self._buf
        n = len(buf)
        while self._pos < n and self._mode is not _Mode.DONE:
            mode = self._mode
            if mode is _Mode.SEEK:
                if not self._seek(buf, final):
                    break
            elif mode is _Mode.EXPECT:
                i = self._skip_ws(buf, self._pos)
                if i >= n:
                    self._pos = i
                    break
                c = buf[i]
                if c == "]":  # empty array, or a trailing comma before ']'
                    self._pos = i + 1
                    self._mode = _Mode.DONE
                elif c == ",":  # a stray comma: an empty slot, skip it
                    self._pos = i + 1
                else:
                    self._begin_element(buf, i)
            elif mode is _Mode.ELEMENT:
                ev = self._scan_element(buf, final)
                if ev is not None:
                    events.append(ev)
                elif self._mode is _Mode.ELEMENT:
                    break  # needs more input
            else:  # AFTER
                i = self._skip_ws(buf, self._pos)
                if i >= n:
                    self._pos = i
                    break
                c = buf[i]
                if c == ",":
                    self._pos = i + 1
                    self._mode = _Mode.EXPECT
                elif c == "]":
                    self._pos = i + 1
                    self._mode = _Mode.DONE
                elif self._bare_object:
                    # A run of bare objects (one per line, or comma-separated) continues
                    # with '{'; anything else ends the reply.
                    if c == "{":
                        self._begin_element(buf, i)
                    else:
                        self._mode = _Mode.DONE
                elif c == "}":
                    # '}' closing an envelope without ']': the array is over.
                    self._pos = i + 1
                    self._mode = _Mode.DONE
                    self._set_problem("array not closed with ']'")
                else:  # missing comma: start the next element here
                    self._begin_element(buf, i)
        return events

    @staticmethod
    def _skip_ws(buf: str, i: int) -> int:
        n = len(buf)
        while i < n and buf[i] in _WS:
            i += 1
        return i

    def _seek(self, buf: str, final: bool) -> bool:
        """Advance through junk to the array. Returns False when more input is needed.

        Every decision that depends on characters not yet received waits for them, so the
        outcome does not depend on where the stream was split."""
        n = len(buf)
        i = self._pos
        while i < n:
            c = buf[i]
            if c in _WS:
                i += 1
            elif c == "<":
                if buf.startswith(_THINK_OPEN, i):
                    end = buf.find(_THINK_CLOSE, i + len(_THINK_OPEN))
                    if end < 0:
                        self._pos = i
                        if final:
                            self._set_problem("reply ended inside <think>")
                        return False
                    i = end + len(_THINK_CLOSE)
                    continue
                if not final and _THINK_OPEN.startswith(buf[i:]):
                    self._pos = i  # maybe the start of "<think>": wait
                    return False
                self._clean = False
                i += 1
            elif c == "`":
                # A fence opener (```json) keeps the reply "clean"; other backticks are junk.
                if buf.startswith(_FENCE, i):
                    j = i + len(_FENCE)
                    while j < n and (buf[j].isalnum() or buf[j] in "_-"):
                        j += 1
                    if j >= n and not final:
                        self._pos = i  # the language word may go on
                        return False
                    i = j
                    continue
                if not final and _FENCE.startswith(buf[i:]):
                    self._pos = i
                    return False
                self._clean = False
                i += 1
            elif c == "[":
                if self._clean:
                    self._open_array(i + 1)
                    return True
                j = self._skip_ws(buf, i + 1)
                if j >= n:
                    self._pos = i
                    if final:
                        self._set_problem("reply ended right after '['")
                    return False
                if buf[j] in "{]":
                    self._open_array(i + 1)
                    return True
                self._clean = False
                i += 1  # '[' in prose: junk
            elif c == "{":
                m = _ENVELOPE.match(buf, i)
                if m is not None:
                    self._open_array(m.end())
                    return True
                if not final and self._could_be_envelope(buf[i:]):
                    self._pos = i
                    return False
                # A bare object instead of an array: element 0 if it decodes to an object,
                # else junk (see _complete).
                self._bare_object = True
                self._begin_element(buf, i)
                return True
            else:
                self._clean = False
                i += 1
        self._pos = i
        return False

    def _open_array(self, pos: int) -> None:
        self._saw_array = True
        self._pos = pos
        self._mode = _Mode.EXPECT

    @classmethod
    def _could_be_envelope(cls, tail: str) -> bool:
        """True while ``tail`` (starting at '{') may still grow into an envelope opening
        such as ``{"plans": [``."""
        n = len(tail)
        j = cls._skip_ws(tail, 1)
        if j >= n:
            return True
        if tail[j] != '"':
            return False
        j += 1
        for key in _ENVELOPE_KEYS:
            target = key + '"'
            rest = tail[j : j + len(target)]
            if not target.startswith(rest):
                continue
            if len(rest) < len(target):
                return True
            k = cls._skip_ws(tail, j + len(target))
            if k >= n:
                return True
            if tail[k] != ":":
                continue
            k = cls._skip_ws(tail, k + 1)
            if k >= n:
                return True
        return False

    def _begin_element(self, buf: str, i: int) -> None:
        self._mode = _Mode.ELEMENT
        self._start = i
        self._stack = []
        self._in_string = False
        self._escape = False
        c = buf[i]
        if c in "{[":
            self._stack.append("}" if c == "{" else "]")
            self._scalar = False
            self._pos = i + 1
        elif c == '"':
            self._in_string = True
            self._scalar = False
            self._pos = i + 1
        else:
            self._scalar = True
            self._pos = i

    def _scan_element(self, buf: str, final: bool) -> StreamEvent | None:
        """Continue the current element. Returns its event when it completes; None when it
        needs more input (mode stays ELEMENT) or was junk (mode changed)."""
        n = len(buf)
        i = self._pos
        if self._scalar:
            m = _SCALAR_END.search(buf, i)
            if m is None:
                if not final:
                    self._pos = n
                    return None
                end = n
            else:
                # At least one character: a scalar that starts with a character \s matches
                # but JSON does not call whitespace (\v, \f, U+2028) would otherwise be an
                # empty element, re-begun at the same place forever (found by fuzzing).
                end = max(m.start(), self._start + 1)
            return self._complete(buf, end)
        stack = self._stack
        while i < n:
            if self._in_string:
                if self._escape:
                    self._escape = False
                    i += 1
                    continue
                m = _IN_STRING.search(buf, i)
                if m is None:
                    i = n
                    break
                i = m.end()
                if m.group() == "\\":
                    self._escape = True
                else:
                    self._in_string = False
                    if not stack:  # a string element
                        return self._complete(buf, i)
                continue
            m = _STRUCT.search(buf, i)
            if m is None:
                i = n
                break
            c = m.group()
            i = m.end()
            if c == '"':
                self._in_string = True
            elif c in "{[":
                stack.append("}" if c == "{" else "]")
            else:  # closer
                if c in stack:
                    # Pop to the matching opener (a mismatched closer ends the inner ones).
                    while stack and stack.pop() != c:
                        pass
                # A closer with no opener at all inside this element is just junk.
                if not stack:
                    return self._complete(buf, i)
        self._pos = i
        return None

    def _complete(self, buf: str, end: int) -> StreamEvent | None:
        raw = buf[self._start : end]
        self._pos = end
        self._mode = _Mode.AFTER
        if self._bare_object and self._index == 0:
            value, repaired = _decode(raw)
            if value is _FAILED or not isinstance(value, dict):
                # Braces in prose before the real reply: junk, keep looking for the array.
                self._bare_object = False
                self._clean = False
                self._mode = _Mode.SEEK
                return None
            return self._ok(value, raw, repaired=repaired)
        value, repaired = _decode(raw)
        if value is _FAILED:
            return self._error(raw, f"invalid JSON: {repaired_reason(raw)}")
        return self._ok(value, raw, repaired=repaired)

    def _ok(self, value: Any, raw: str, *, repaired: bool) -> ParsedElement:
        ev = ParsedElement(self._index, value, raw, repaired)
        self._index += 1
        self.elements_ok += 1
        return ev

    def _error(self, raw: str, message: str) -> ElementError:
        ev = ElementError(self._index, raw, message)
        self._index += 1
        self.elements_bad += 1
        return ev


_FAILED: Any = object()


def _decode(raw: str) -> tuple[Any, bool]:
    """(value, repaired) or (_FAILED, False)."""
    text = raw.strip()
    try:
        return _DECODER.decode(text), False
    except (ValueError, RecursionError):
        pass
    fixed = _strip_trailing_commas(text)
    if fixed != text:
        try:
            return _DECODER.decode(fixed), True
        except (ValueError, RecursionError):
            pass
    return _FAILED, False


def repaired_reason(raw: str) -> str:
    """Why ``raw`` does not decode, in json's words."""
    try:
        _DECODER.decode(raw.strip())
    except (ValueError, RecursionError) as exc:
        return str(exc) or type(exc).__name__
    return "no error"


def _strip_trailing_commas(text: str) -> str:
    """Remove commas directly before '}' or ']' outside strings."""
    if "," not in text:
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n:
                if text[j] == "\\":
                    j += 2
                    continue
                if text[j] == '"':
                    break
                j += 1
            out.append(text[i : j + 1])
            i = j + 1
            continue
        if c == ",":
            m = _TRAILING_COMMA.match(text, i)
            if m is not None:
                i += 1
                continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_array(text: str | bytes) -> tuple[list[StreamEvent], str | None]:
    """Parse a complete reply at once: (events, problem). Same results as streaming it."""
    p = JsonArrayStreamParser()
    events = p.feed(text)
    events.extend(p.finish())
    return events, p.problem
