"""The event schemas compiled to programs that ``_schema_check.c`` runs before jsonschema-rs.

jsonschema-rs took 1.3 us of an event's 3.2 us of validation, most of it turning the
decoded dict into its own values before it looks at them. The C checker reads the dict
as it is, with each schema compiled here once at start-up into nested tuples of
constraints, and each ``pattern`` into a run of character classes or, where it has
groups or alternatives, a table-driven automaton.

The checker only ever shortcuts an acceptance: it answers "valid" when it is sure,
"invalid" when it is sure, and "unsure" for everything this compiler or the C code
does not model exactly (a time that is not the common form, a URI that is not a plain
path, a whole number written as a float...). ``EventValidator`` asks jsonschema-rs
whenever the answer is not "valid", so a record the checker cannot vouch for takes the
path it took before, and rejections keep their reason codes and sentences.
A schema holding any keyword this compiler does not know compiles to None: its events
all go to jsonschema-rs. ``tests/unit/test_schema_check.py`` holds both to the same
answers on every example, the fuzz corpus and generated records.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urldefrag, urljoin

# Opcodes of a constraint tuple; _schema_check.c reads the same numbers.
(TYPE, CONST, ENUM, LENGTH, PATTERN, FORMAT, MINIMUM, MAXIMUM, PROPERTIES, IF, NOT,
 SPANS) = range(12)
# Bits of TYPE's mask.
T_STRING, T_NUMBER, T_INTEGER, T_BOOLEAN, T_NULL, T_OBJECT, T_ARRAY = (1 << i for i in range(7))
_TYPE_BITS = {
    "string": T_STRING,
    "number": T_NUMBER,
    "integer": T_INTEGER,
    "boolean": T_BOOLEAN,
    "null": T_NULL,
    "object": T_OBJECT,
    "array": T_ARRAY,
}
# Formats the checker vouches for (in their plainest form only; see _schema_check.c).
FORMATS = {"date-time": 1, "uri-reference": 2, "uri": 3}
# Keywords that never change whether a record is valid.
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "$defs", "title", "description", "examples", "default"}
)
_PROPERTY_KEYWORDS = ("properties", "required", "additionalProperties", "propertyNames")
DEAD = 0xFFFF  # the automaton's state after a character no match can follow
_MAX_STATES = 4096
_MAX_REPEAT = 1024

Node = tuple[Any, ...]


class Unsupported(Exception):
    """A schema uses something the checker does not model exactly."""


def compile_schema(
    schema: Mapping[str, Any], documents: Mapping[str, Mapping[str, Any]]
) -> Node | None:
    """The checker's program for ``schema`` (its ``$ref`` resolved in ``documents``, by
    ``$id``); None when it uses anything the checker does not model."""
    try:
        return _Compiler(documents).node(schema, str(schema.get("$id", "")), 0)
    except Unsupported:
        return None


class _Compiler:
    def __init__(self, documents: Mapping[str, Mapping[str, Any]]) -> None:
        self.documents = documents

    def node(self, schema: object, base: str, depth: int) -> Node:
        if depth > 64:
            raise Unsupported("nesting too deep (a recursive schema?)")
        if schema is True:
            return ()
        if schema is False:
            return ((NOT, ()),)
        if not isinstance(schema, Mapping):
            raise Unsupported(f"a schema must be an object, not {type(schema).__name__}")
        if isinstance(schema.get("$id"), str):
            base = urljoin(base, schema["$id"])
        out: list[tuple[Any, ...]] = []
        for key, value in schema.items():
            if key in _ANNOTATIONS or key.startswith("x-") or key in _PROPERTY_KEYWORDS:
                continue
            if key == "$ref":
                out.extend(self.ref(value, base, depth))
            elif key == "type":
                names = [value] if isinstance(value, str) else value
                if not isinstance(names, list) or any(n not in _TYPE_BITS for n in names):
                    raise Unsupported(f"type {value!r}")
                mask = 0
                for n in names:
                    mask |= _TYPE_BITS[n]
                out.append((TYPE, mask))
            elif key == "const":
                out.append((CONST, _scalar(value)))
            elif key == "enum":
                if not isinstance(value, list):
                    raise Unsupported("enum is not a list")
                out.append((ENUM, tuple(_scalar(v) for v in value)))
            elif key in ("minLength", "maxLength"):
                continue  # below, together
            elif key == "pattern":
                out.append(self.pattern(value))
            elif key == "format":
                if value not in FORMATS:
                    raise Unsupported(f"format {value!r}")
                out.append((FORMAT, FORMATS[value]))
            elif key in ("minimum", "maximum"):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise Unsupported(f"{key} {value!r}")
                if isinstance(value, int) and abs(value) > 2**53:
                    raise Unsupported(f"{key} beyond a float's exact range")
                out.append((MINIMUM if key == "minimum" else MAXIMUM, float(value)))
            elif key == "if":
                then = schema.get("then")
                other = schema.get("else")
                out.append((
                    IF,
                    self.node(value, base, depth + 1),
                    None if then is None else self.node(then, base, depth + 1),
                    None if other is None else self.node(other, base, depth + 1),
                ))
            elif key in ("then", "else"):
                continue  # without "if" they do nothing; with it, above
            elif key == "not":
                out.append((NOT, self.node(value, base, depth + 1)))
            else:
                raise Unsupported(f"keyword {key!r}")
        if "minLength" in schema or "maxLength" in schema:
            given = [schema[k] for k in ("minLength", "maxLength") if k in schema]
            if not all(type(v) is int and v >= 0 for v in given):
                raise Unsupported("minLength or maxLength is not a whole number")
            # -1: no most (the C side's sentinel).
            out.append((LENGTH, schema.get("minLength", 0), schema.get("maxLength", -1)))
        if any(k in schema for k in _PROPERTY_KEYWORDS):
            out.append(self.properties(schema, base, depth))
        return _implied(out)

    def properties(self, schema: Mapping[str, Any], base: str, depth: int) -> tuple[Any, ...]:
        props = schema.get("properties", {})
        required = schema.get("required", [])
        if not isinstance(props, Mapping) or not isinstance(required, list):
            raise Unsupported("properties or required malformed")
        if not all(isinstance(r, str) for r in required):
            raise Unsupported("required names a non-string")
        nodes = {str(k): self.node(v, base, depth + 1) for k, v in props.items()}
        additional: object = None  # any
        if "additionalProperties" in schema:
            extra = schema["additionalProperties"]
            additional = False if extra is False else self.node(extra, base, depth + 1)
        names = schema.get("propertyNames")
        return (
            PROPERTIES,
            nodes,
            tuple(required),
            additional,
            None if names is None else self.node(names, base, depth + 1),
        )

    def ref(self, ref: object, base: str, depth: int) -> Node:
        if not isinstance(ref, str):
            raise Unsupported("$ref is not a string")
        url, fragment = urldefrag(urljoin(base, ref))
        document = self.documents.get(url)
        if document is None:
            raise Unsupported(f"$ref to an unknown document {url}")
        target: object = document
        if fragment:
            if not fragment.startswith("/"):
                raise Unsupported("$ref to an anchor")
            for part in fragment[1:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, Mapping) or part not in target:
                    raise Unsupported(f"$ref {ref} does not resolve")
                target = target[part]
        return self.node(target, url, depth + 1)

    def pattern(self, pattern: object) -> tuple[Any, ...]:
        if not isinstance(pattern, str):
            raise Unsupported("pattern is not a string")
        return pattern_check(pattern)


# The times the checker's date-time format vouches for (``date_time`` in
# _schema_check.c; tests/unit/test_schema_check.py holds it to this), calendar aside.
DATE_TIME_FORM = (
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
    "(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"
)


def _implied(checks: list[tuple[Any, ...]]) -> Node:
    """The checks, with a pattern that every time the date-time format vouches for
    matches dropped, and the format moved first.

    The format answers "valid" or "unsure", never "invalid": when it is sure, such a
    pattern matches too; when it is not, the node is not valid whatever the pattern says.
    The timestamps' pattern was half of the checker's time per event.
    """
    fmt = (FORMAT, FORMATS["date-time"])
    if fmt not in checks:
        return tuple(checks)
    kept = [
        c for c in checks
        if not (c[0] == PATTERN and _includes_date_time(c[1], c[2]))
    ]
    kept.remove(fmt)
    return (fmt, *kept)


@lru_cache(maxsize=64)
def _includes_date_time(table: bytes, accepting: bytes) -> bool:
    return includes(automaton(DATE_TIME_FORM), (table, accepting))


def includes(inner: tuple[bytes, bytes], outer: tuple[bytes, bytes]) -> bool:
    """Whether every text ``inner``'s automaton accepts ``outer``'s accepts too."""
    a_next, a_accept = array("H", inner[0]), inner[1]
    b_next, b_accept = array("H", outer[0]), outer[1]
    todo = [(0, 0)]
    seen = {(0, 0)}
    while todo:
        a, b = todo.pop()
        if a_accept[a] and (b == DEAD or not b_accept[b]):
            return False
        for ch in range(128):
            na = a_next[a * 128 + ch]
            if na == DEAD:
                continue
            nb = DEAD if b == DEAD else b_next[b * 128 + ch]
            if (na, nb) not in seen:
                seen.add((na, nb))
                todo.append((na, nb))
    return True


def _scalar(value: object) -> object:
    if value is None or isinstance(value, str | bool):
        return value
    raise Unsupported(f"const or enum value {value!r} (only strings, booleans and null)")


# --- patterns --------------------------------------------------------------------------
# The ECMA-262 subset the schemas use, anchored at both ends: literals, escaped
# punctuation, classes of ranges, groups with alternatives, ? * + {n} {n,} {n,m}.
# Anything else (., \d, \w, lookarounds, a class with ^, a pattern not anchored at both
# ends, a character outside ASCII) is Unsupported. Every character these patterns can
# match is ASCII, so a record character at or above 128 fails the match, in ECMA's
# UTF-16 units as in code points.

_SPECIAL = set("^$|?*+()[]{}.\\")
_Set = frozenset[int]


class _Parser:
    def __init__(self, pattern: str) -> None:
        if not pattern.isascii():
            raise Unsupported("a pattern with a character outside ASCII")
        self.p = pattern
        self.i = 0

    def parse(self) -> tuple[Any, ...]:
        if not (self.p.startswith("^") and self.p.endswith("$") and not self.p.endswith("\\$")):
            raise Unsupported("a pattern not anchored at both ends")
        self.i = 1
        self.p = self.p[:-1]
        tree = self.sequence()
        if self.i != len(self.p):
            # A top-level "|" would bind looser than the anchors (^a|b$): not modelled.
            raise Unsupported(f"pattern {self.p!r}: unexpected {self.p[self.i]!r}")
        return tree

    def peek(self) -> str:
        return self.p[self.i] if self.i < len(self.p) else ""

    def alternatives(self) -> tuple[Any, ...]:
        alts = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            alts.append(self.sequence())
        return ("alt", alts)

    def sequence(self) -> tuple[Any, ...]:
        items = []
        while self.peek() not in ("", "|", ")"):
            atom = self.atom()
            lo, hi = self.quantifier()
            items.append(("rep", atom, lo, hi) if (lo, hi) != (1, 1) else atom)
        return ("seq", items)

    def atom(self) -> tuple[Any, ...]:
        c = self.peek()
        if c == "(":
            self.i += 1
            if self.peek() == "?":
                raise Unsupported("a group with ?")
            inner = self.alternatives()
            if self.peek() != ")":
                raise Unsupported("an unclosed group")
            self.i += 1
            return inner
        if c == "[":
            return ("set", self.charclass())
        if c == "\\":
            return ("set", frozenset({ord(self.escaped())}))
        if c in _SPECIAL:
            raise Unsupported(f"{c!r} in a pattern")
        self.i += 1
        return ("set", frozenset({ord(c)}))

    def escaped(self) -> str:
        self.i += 1
        c = self.peek()
        if not c or c.isalnum() or c == "_":
            raise Unsupported(f"the escape \\{c}")
        self.i += 1
        return c

    def charclass(self) -> _Set:
        self.i += 1
        if self.peek() == "^":
            raise Unsupported("a negated class")
        chars: set[int] = set()
        first = True
        while True:
            c = self.peek()
            if not c:
                raise Unsupported("an unclosed class")
            if c == "]" and not first:
                self.i += 1
                return frozenset(chars)
            if c == "]" or c == "[":
                raise Unsupported(f"{c!r} inside a class")
            lo = self.class_char()
            if self.peek() == "-" and self.i + 1 < len(self.p) and self.p[self.i + 1] != "]":
                self.i += 1
                hi = self.class_char()
                if hi < lo:
                    raise Unsupported("a range out of order")
                chars.update(range(lo, hi + 1))
            else:
                chars.add(lo)
            first = False

    def class_char(self) -> int:
        if self.peek() == "\\":
            return ord(self.escaped())
        c = self.peek()
        self.i += 1
        return ord(c)

    def quantifier(self) -> tuple[int, int]:
        c = self.peek()
        if c in ("?", "*", "+"):
            self.i += 1
            bounds = {"?": (0, 1), "*": (0, -1), "+": (1, -1)}[c]
        elif c == "{":
            end = self.p.find("}", self.i)
            body = self.p[self.i + 1 : end] if end > 0 else ""
            lo_text, comma, hi_text = body.partition(",")
            if not lo_text.isdigit() or (hi_text and not hi_text.isdigit()):
                raise Unsupported(f"the quantifier {{{body}}}")
            lo = int(lo_text)
            hi = (int(hi_text) if hi_text else -1) if comma else lo
            if max(lo, hi) > _MAX_REPEAT or (hi != -1 and hi < lo):
                raise Unsupported(f"the quantifier {{{body}}}")
            self.i = end + 1
            bounds = (lo, hi)
        else:
            return 1, 1
        if self.peek() in ("?", "+"):
            raise Unsupported("a lazy or possessive quantifier")
        return bounds


@lru_cache(maxsize=256)
def pattern_check(pattern: str) -> tuple[Any, ...]:
    """The constraint for ``pattern``: SPANS where it has that shape, else PATTERN.

    Cached: an automaton takes milliseconds to build, and every validator (the tests make
    hundreds) compiles the same few patterns.
    """
    tree = _Parser(pattern).parse()
    return spans(tree) or (PATTERN, *automaton(pattern))


def _bitmap(chars: _Set) -> bytes:
    bits = bytearray(16)
    for c in chars:
        bits[c >> 3] |= 1 << (c & 7)
    return bytes(bits)


def spans(tree: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """A pattern of single classes, each but the last repeated a fixed number of times
    (``^[a-z][a-z0-9-]{0,31}$``), as (SPANS, one bitmap per fixed position, the last
    class's bitmap, its least and most repeats); None for any other pattern.

    Matched position by position, without the automaton: nothing before the last class
    can take a variable number of characters, so there is nothing to backtrack over,
    and each character is one bit test rather than a load that waits for the one before.
    """
    if tree[0] != "seq" or not tree[1]:
        return None
    items: list[tuple[_Set, int, int]] = []
    for item in tree[1]:
        if item[0] == "set":
            items.append((item[1], 1, 1))
        elif item[0] == "rep" and item[1][0] == "set":
            items.append((item[1][1], item[2], item[3]))
        else:
            return None
    *fixed, (last, lo, hi) = items
    if any(a != b for _, a, b in fixed):
        return None
    heads = b"".join(_bitmap(chars) * n for chars, n, _ in fixed)
    return (SPANS, heads, _bitmap(last), lo, hi)


class _NFA:
    """Thompson's construction: states with character-set edges and empty edges."""

    def __init__(self) -> None:
        self.edges: list[list[tuple[_Set | None, int]]] = []

    def state(self) -> int:
        self.edges.append([])
        return len(self.edges) - 1

    def build(self, tree: tuple[Any, ...]) -> tuple[int, int]:
        kind = tree[0]
        if kind == "set":
            a, b = self.state(), self.state()
            self.edges[a].append((tree[1], b))
            return a, b
        if kind == "seq":
            start = end = self.state()
            for item in tree[1]:
                s, e = self.build(item)
                self.edges[end].append((None, s))
                end = e
            return start, end
        if kind == "alt":
            start, end = self.state(), self.state()
            for alt in tree[1]:
                s, e = self.build(alt)
                self.edges[start].append((None, s))
                self.edges[e].append((None, end))
            return start, end
        _, atom, lo, hi = tree
        start = end = self.state()
        for _ in range(lo):
            s, e = self.build(atom)
            self.edges[end].append((None, s))
            end = e
        if hi == -1:
            s, e = self.build(atom)
            self.edges[end].append((None, s))
            self.edges[e].append((None, s))
            after = self.state()
            self.edges[end].append((None, after))
            self.edges[e].append((None, after))
            return start, after
        after = self.state()
        for _ in range(hi - lo):
            s, e = self.build(atom)
            self.edges[end].append((None, s))
            self.edges[end].append((None, after))
            end = e
        self.edges[end].append((None, after))
        return start, after

    def closure(self, states: set[int]) -> frozenset[int]:
        todo = list(states)
        seen = set(states)
        while todo:
            for label, target in self.edges[todo.pop()]:
                if label is None and target not in seen:
                    seen.add(target)
                    todo.append(target)
        return frozenset(seen)


@lru_cache(maxsize=64)
def automaton(pattern: str) -> tuple[bytes, bytes]:
    """``pattern`` as a deterministic automaton over ASCII: (transitions, accepting).

    ``transitions`` holds native-endian uint16s, 128 per state, the next state for each
    character (DEAD: no match possible); ``accepting`` one byte per state. State 0 starts.
    """
    nfa = _NFA()
    start, final = nfa.build(_Parser(pattern).parse())
    first = nfa.closure({start})
    index = {first: 0}
    order = [first]
    table = array("H")
    accepting = bytearray()
    while len(accepting) < len(order):
        current = order[len(accepting)]
        accepting.append(1 if final in current else 0)
        for ch in range(128):
            moved = {
                t for s in current for label, t in nfa.edges[s] if label is not None and ch in label
            }
            if not moved:
                table.append(DEAD)
                continue
            target = nfa.closure(moved)
            if target not in index:
                if len(order) >= _MAX_STATES:
                    raise Unsupported(f"pattern {pattern!r} needs too many states")
                index[target] = len(order)
                order.append(target)
            table.append(index[target])
    return table.tobytes(), bytes(accepting)
