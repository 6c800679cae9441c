"""Calico's selector language, parsed and evaluated as libcalico-go does.

Grammar (docs.tigera.io/calico/latest/reference/resources/networkpolicy#selectors,
and libcalico-go/lib/selector/{tokenizer,parser}):

    or   := and ( "||" and )*
    and  := op ( "&&" op )*
    op   := "!"* ( "has(" label ")" | "all()" | "global()" | "(" or ")"
                 | label ( "==" | "!=" | "contains" | "starts with" | "ends with" ) string
                 | label ( "in" | "not in" ) "{" [ string ( "," string )* [","] ] "}" )

Labels are runs of `[A-Za-z0-9_./-]`; strings are single- or double-quoted with no
escapes; only spaces and tabs separate tokens (as in libcalico-go). An empty
selector means `all()`. `!=` and `not in` match a resource that lacks the label;
`==`, `in`, `contains`, `starts with` and `ends with` need it.

Besides a plain match, `evaluate` answers in three values (True, False, None =
"depends on labels we do not know"): a namespace-wide question knows the
namespace's labels but not the pod's, so a selector on pod labels gives None.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from webhook.core.errors import ObjectError

Tri = bool | None  # None: unknown (depends on labels not known at this point)

_IDENT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-")
MAX_LABEL_LENGTH = 512


class SelectorError(ValueError):
    def __init__(self, text: str, position: int, problem: str) -> None:
        super().__init__(f"{problem} at position {position} of {text!r}")
        self.position = position
        self.problem = problem


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # label string { } , == != in notin contains startswith endswith all has global ( ) && || ! eof
    value: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    i = 0
    n = len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            tokens.append(_Tok("eof", "", i))
            return tokens
        start = i
        c = text[i]
        last = tokens[-1].kind if tokens else ""
        if c in "(){},":
            tokens.append(_Tok(c, c, i))
            i += 1
        elif c in "\"'":
            end = text.find(c, i + 1)
            if end < 0:
                raise SelectorError(text, i, "unterminated string")
            tokens.append(_Tok("string", text[i + 1:end], i))
            i = end + 1
        elif c == "=":
            if not text.startswith("==", i):
                raise SelectorError(text, i, "expected ==")
            tokens.append(_Tok("==", "==", i))
            i += 2
        elif c == "!":
            if text.startswith("!=", i):
                tokens.append(_Tok("!=", "!=", i))
                i += 2
            else:
                tokens.append(_Tok("!", "!", i))
                i += 1
        elif c == "&":
            if not text.startswith("&&", i):
                raise SelectorError(text, i, "expected &&")
            tokens.append(_Tok("&&", "&&", i))
            i += 2
        elif c == "|":
            if not text.startswith("||", i):
                raise SelectorError(text, i, "expected ||")
            tokens.append(_Tok("||", "||", i))
            i += 2
        elif last == "label":
            for kind, words in (("contains", ("contains",)), ("startswith", ("starts", "with")),
                                ("endswith", ("ends", "with")), ("notin", ("not", "in")), ("in", ("in",))):
                after = _cut_words(text, i, words)
                if after is not None:
                    tokens.append(_Tok(kind, kind, i))
                    i = after
                    break
            else:
                raise SelectorError(text, i, f"expected an operator after label {tokens[-1].value!r}")
        elif text.startswith("has(", i):
            j = _skip_blanks(text, i + 4)
            ident, j = _identifier(text, j)
            j = _skip_blanks(text, j)
            if not text.startswith(")", j):
                raise SelectorError(text, j, "no closing ')' after has(")
            tokens.append(_Tok("has", ident, start))
            i = j + 1
        elif text.startswith("all(", i) or text.startswith("global(", i):
            word = "all" if text.startswith("all(", i) else "global"
            j = _skip_blanks(text, i + len(word) + 1)
            if not text.startswith(")", j):
                raise SelectorError(text, j, f"no closing ')' after {word}(")
            tokens.append(_Tok(word, word, start))
            i = j + 1
        else:
            ident, i = _identifier(text, i)
            tokens.append(_Tok("label", ident, start))


def _skip_blanks(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _cut_words(text: str, i: int, words: tuple[str, ...]) -> int | None:
    for index, word in enumerate(words):
        if not text.startswith(word, i):
            return None
        i += len(word)
        if index < len(words) - 1:
            i = _skip_blanks(text, i)
    if i < len(text) and text[i] in _IDENT:
        return None  # not a word boundary
    return i


def _identifier(text: str, i: int) -> tuple[str, int]:
    j = i
    while j < len(text) and text[j] in _IDENT:
        j += 1
    if j == i:
        raise SelectorError(text, i, "expected a label name" if i < len(text) else "unexpected end of selector")
    if j - i > MAX_LABEL_LENGTH:
        raise SelectorError(text, i, f"label longer than {MAX_LABEL_LENGTH} characters")
    return text[i:j], j


# ----- the tree -----
Labels = Mapping[str, str]
Known = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class Node:
    op: str  # all global has == != in notin contains startswith endswith not and or
    label: str = ""
    values: frozenset[str] = frozenset()
    children: tuple[Node, ...] = ()

    def labels(self) -> frozenset[str]:
        own = frozenset({self.label}) if self.label else frozenset()
        return own.union(*(c.labels() for c in self.children))

    def evaluate(self, labels: Labels, known: Known | None = None) -> Tri:
        """Three-valued: None when the answer depends on a label `known` says we do not know."""
        op = self.op
        if op in ("all", "global"):
            return True
        if op == "not":
            inner = self.children[0].evaluate(labels, known)
            return None if inner is None else not inner
        if op == "and":
            result: Tri = True
            for child in self.children:
                value = child.evaluate(labels, known)
                if value is False:
                    return False
                if value is None:
                    result = None
            return result
        if op == "or":
            result = False
            for child in self.children:
                value = child.evaluate(labels, known)
                if value is True:
                    return True
                if value is None:
                    result = None
            return result
        if known is not None and not known(self.label):
            return None
        found = labels.get(self.label)
        if op == "has":
            return found is not None
        if op in ("!=", "notin"):
            return found is None or found not in self.values
        if found is None:
            return False
        if op in ("==", "in"):
            return found in self.values
        literal = next(iter(self.values))
        if op == "contains":
            return literal in found
        if op == "startswith":
            return found.startswith(literal)
        return found.endswith(literal)


@dataclass(frozen=True, slots=True)
class Selector:
    text: str
    root: Node

    @property
    def is_all(self) -> bool:
        return self.root.op == "all"

    @property
    def uses_global(self) -> bool:
        return _uses(self.root, "global")

    def matches(self, labels: Labels) -> bool:
        return self.root.evaluate(labels) is True

    def evaluate(self, labels: Labels, known: Known | None = None) -> Tri:
        return self.root.evaluate(labels, known)

    def describe(self) -> str:
        return self.text.strip() or "all()"


def _uses(node: Node, op: str) -> bool:
    return node.op == op or any(_uses(c, op) for c in node.children)


ALL = Selector("", Node("all"))


class _Parser:
    def __init__(self, text: str, tokens: list[_Tok]) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0

    def peek(self) -> _Tok:
        return self.tokens[self.i]

    def take(self) -> _Tok:
        token = self.tokens[self.i]
        if token.kind != "eof":
            self.i += 1
        return token

    def fail(self, token: _Tok, problem: str) -> SelectorError:
        return SelectorError(self.text, token.pos, problem)

    def parse_or(self) -> Node:
        nodes = [self.parse_and()]
        while self.peek().kind == "||":
            self.take()
            nodes.append(self.parse_and())
        return nodes[0] if len(nodes) == 1 else Node("or", children=tuple(nodes))

    def parse_and(self) -> Node:
        nodes = [self.parse_op()]
        while self.peek().kind == "&&":
            self.take()
            nodes.append(self.parse_op())
        return nodes[0] if len(nodes) == 1 else Node("and", children=tuple(nodes))

    def parse_op(self) -> Node:
        negated = False
        while self.peek().kind == "!":
            self.take()
            negated = not negated
        token = self.take()
        node: Node
        if token.kind in ("all", "global"):
            node = Node(token.kind)
        elif token.kind == "has":
            node = Node("has", token.value)
        elif token.kind == "(":
            node = self.parse_or()
            closing = self.take()
            if closing.kind != ")":
                raise self.fail(closing, "expected )")
        elif token.kind == "label":
            operator = self.take()
            if operator.kind in ("==", "!=", "contains", "startswith", "endswith"):
                literal = self.take()
                if literal.kind != "string":
                    raise self.fail(literal, "expected a quoted string")
                node = Node(operator.kind, token.value, frozenset({literal.value}))
            elif operator.kind in ("in", "notin"):
                brace = self.take()
                if brace.kind != "{":
                    raise self.fail(brace, "expected a set literal {...}")
                values: list[str] = []
                while self.peek().kind == "string":
                    values.append(self.take().value)
                    if self.peek().kind != ",":
                        break
                    self.take()
                closing = self.take()
                if closing.kind != "}":
                    raise self.fail(closing, "expected }")
                node = Node(operator.kind, token.value, frozenset(values))
            else:
                raise self.fail(operator, f"expected an operator after label {token.value!r}")
        elif token.kind == "eof":
            raise self.fail(token, "unexpected end of selector")
        else:
            raise self.fail(token, f"unexpected {token.value!r}")
        return Node("not", children=(node,)) if negated else node


def parse(text: str) -> Selector:
    """Parse a Calico selector; raises SelectorError naming the position."""
    tokens = _tokenize(text)
    if tokens[0].kind == "eof":
        return Selector(text, Node("all"))
    parser = _Parser(text, tokens)
    root = parser.parse_or()
    rest = parser.peek()
    if rest.kind != "eof":
        raise parser.fail(rest, f"unexpected {rest.value!r} after the end of the expression")
    return Selector(text, root)


def parse_field(raw: object, path: str, *, allow_global: bool = False) -> Selector:
    """A selector field of a manifest: a string (absent or "" means all()); ObjectError names the field."""
    if raw is None:
        return ALL
    if not isinstance(raw, str):
        raise ObjectError(path, f"a Calico selector must be a string, not {type(raw).__name__}")
    try:
        selector = parse(raw)
    except SelectorError as error:
        raise ObjectError(path, f"invalid Calico selector: {error}") from None
    if selector.uses_global and not allow_global:
        raise ObjectError(path, "global() can only be used in a rule's namespaceSelector")
    return selector
