"""The standard drift detectors.

Each detector is built once per session from its options and returns, per attempt, a check
``(view) -> score`` with the score in [0, 1]. Checks read the sliding window (``view.window``),
the baseline (the first window of the output) and the text new since the last check; they keep
incremental state where they need history, so no check costs more than O(window + new text).
Most of the work is done by C-level string and regex operations: a check runs once per half
window, and the whole check must stay in the tens of microseconds.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

from l0.drift import DetectorCheck, DetectorSpec, DriftView

__all__ = [
    "SPECS",
    "EntropyCollapse",
    "FormatDrift",
    "MetaCommentary",
    "Repetition",
    "ToneShift",
    "output_kind",
]


def _clamp(value: float) -> float:
    return 0.0 if value <= 0 else min(value, 1.0)


def _options(name: str, given: Mapping[str, Any], defaults: Mapping[str, float]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown option {unknown[0]!r}; {name} takes: {', '.join(sorted(defaults)) or 'none'}"
        )
    out = dict(defaults)
    for key, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"option {key}={value!r}: expected a number > 0")
        out[key] = value
    return out


# --- output kind: decided from how the answer starts ------------------------------------------

_CODE_START = re.compile(
    r"(?:```|~~~|def |class |import |from \S+ import |#include|package |function |const |let "
    r"|var |<\?php|<!DOCTYPE|<html|SELECT |CREATE |#!/)",
)
_MD_LINE = re.compile(r"^[ \t]*(?:#{1,6}[ \t]|[-*+][ \t]|\d{1,3}[.)][ \t]|\||>)", re.MULTILINE)


def output_kind(head: str) -> str:
    """``"json"``, ``"code"`` or ``"text"`` (prose or markdown), from the start of the output."""
    start = head.lstrip()[:16]
    if start[:1] in ("{", "["):
        return "json"
    if _CODE_START.match(start):
        return "code"
    return "text"


# --- repetition -------------------------------------------------------------------------------

_LETTER = re.compile(r"[^\W\d_]")
_PROBE: Final = 24


class Repetition:
    """Looping: the recent text repeats a unit back to back, or repeats whole sentences.

    Two measures, the higher wins. *Periodic tail*: the last 24 characters are looked up
    earlier in the window; their distance is a candidate period, and the longest suffix that
    equals itself shifted by that period is the loop (found by binary search with C-level
    slice comparisons). *Repeated sentences*: sentences of 20+ characters seen ``min_repeats``
    times in the window, scored by the share of the window they fill.

    Options: ``min_repeats`` (default 3): repetitions that count as a loop;
    ``min_span`` (default 160): characters a loop must cover to score fully.
    """

    def __init__(self, options: Mapping[str, Any]) -> None:
        opts = _options("repetition", options, {"min_repeats": 3, "min_span": 160})
        self.min_repeats = max(2.0, float(opts["min_repeats"]))
        self.min_span = float(opts["min_span"])

    def start(self) -> DetectorCheck:
        """Stateless: every check reads the window."""
        return self.check

    def check(self, view: DriftView) -> float:
        """Score of the current window."""
        window = view.window
        return max(self._periodic(window), self._sentences(window))

    def _periodic(self, window: str) -> float:
        n = len(window)
        if n < 2 * _PROBE:
            return 0.0
        probe = window[-_PROBE:]
        earlier = window.rfind(probe, 0, n - 1)
        if earlier < 0:
            return 0.0
        period = n - _PROBE - earlier
        lo, hi = _PROBE, n - period  # the suffix of length lo is known to repeat
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if window[n - mid :] == window[n - mid - period : n - period]:
                lo = mid
            else:
                hi = mid - 1
        span = lo + period
        unit = window[n - period :]
        if not _LETTER.search(unit):
            return 0.0  # runs of spaces, digits or punctuation are entropy's business
        reps = span / period
        return _clamp((reps - 1) / (self.min_repeats - 1)) * _clamp(span / self.min_span)

    def _sentences(self, window: str) -> float:
        # Three C-level replaces and a split beat a sentence regex by 5x.
        cut = window.replace("!", ".").replace("?", ".").replace("\n", ".").split(".")
        sentences = [s for s in cut if len(s) >= 20]
        if len(sentences) < self.min_repeats or len(set(sentences)) == len(sentences):
            return 0.0
        counts = Counter(s.strip().lower() for s in sentences)
        top = counts.most_common(1)[0][1]
        if top < self.min_repeats:
            return 0.0
        repeated = sum(len(s) * (c - 1) for s, c in counts.items() if c > 1 and s.count(" ") >= 3)
        return _clamp(repeated / len(window) / 0.4)


# --- meta commentary --------------------------------------------------------------------------

_Q = "['\u2019]"  # models write both apostrophes
# Patterns run on lower-cased text and start with a literal, not ``\b``: the regex engine then
# skips ahead to candidate first characters, about 3x faster than IGNORECASE with ``\b``. The
# word boundary before a match is checked by hand (matches are rare).
_STRONG = (
    r"as an? (?:ai|artificial intelligence|(?:large )?language model|llm|ai (?:language )?model"
    rf"|ai assistant)\b|i(?:{_Q}m| am) (?:just |only )?an? (?:ai|(?:large )?language model"
    r"|ai assistant|ai model)\b"
)
_WEAK = (
    # The contracted forms follow the "i" directly (issue 8 item 11).
    rf"i(?: cannot| can{_Q}t| can not| am unable to| am not able to|{_Q}m unable to"
    rf"|{_Q}m not able to)(?:\s+(?:actually|really|currently|simply))?"
    r"\s+(?:help|assist|provide|fulfill|comply|complete|continue|generate|create|write|answer"
    r"|perform|carry out|do that|do this|browse|access)\b"
    rf"|i(?: apologi[sz]e|{_Q}m sorry), but\b|let me explain what i(?:{_Q}m| am) doing\b"
    r"|my (?:training data|knowledge cutoff)\b|as of my (?:last|latest) (?:training|update)"
)
# One pass over the text: the named group tells a self-reference from a refusal.
_META = re.compile(f"(?P<strong>{_STRONG})|{_WEAK}")
_CARRY: Final = 64
# Every match of ``_META`` contains one of these (lower-cased): "as an ai" holds "an ai", "i'm
# just a language model" holds "language model", "i can't help" holds "i can", and so on. A
# substring search runs at memchr speed; the regex must try every a, i, l and m of the text,
# so a window without any needle (nearly all of them) skips it: about 8x less per check.
# tests/test_drift_incremental.py checks that no match escapes the needles.
_META_NEEDLES: Final = (
    "an ai",
    "a ai",
    "language model",
    "artificial intelligence",
    "llm",
    "i can",
    "unable to",
    "not able to",
    "apologi",
    "sorry, but",
    "let me explain",
    "my training",
    "my knowledge",
    "as of my",
)


# Needles grouped under a shorter string each of them contains: when the shorter one is absent
# (" ai" and "able to" seldom occur in prose; "my" more often, and then costs one search more),
# one search rules out the whole group. The answer is the same as searching
# every needle (tests/test_check_equivalence.py), with 10 searches instead of 14.
_META_GROUPS: Final = (
    (" ai", ("an ai", "a ai")),
    ("able to", ("unable to", "not able to")),
    ("my", ("my training", "my knowledge", "as of my")),
)
_META_SINGLES: Final = tuple(
    n for n in _META_NEEDLES if not any(n in group for _, group in _META_GROUPS)
)


def _may_meta(text: str) -> bool:
    """False when ``text`` (lower-cased) cannot contain a match of ``_META``."""
    for needle in _META_SINGLES:
        if needle in text:
            return True
    for gate, group in _META_GROUPS:
        if gate in text:
            for needle in group:
                if needle in text:
                    return True
    return False


class MetaCommentary:
    """The model talks about itself instead of answering.

    Phrases: "as an AI", "I cannot assist", "I'm sorry, but", "let me explain what I'm doing",
    "my training data". Only the new text (plus a short overlap, so a phrase split between
    checks is still seen) is searched. Each phrase in the window adds to the score: a
    self-reference ("as an AI language model") scores ``strong`` (0.9), a refusal or apology
    ``weak`` (0.7), each further phrase 0.1 more.

    Options: ``strong`` and ``weak`` (the scores above).
    """

    def __init__(self, options: Mapping[str, Any]) -> None:
        opts = _options("meta_commentary", options, {"strong": 0.9, "weak": 0.7})
        self.strong = float(opts["strong"])
        self.weak = float(opts["weak"])

    def start(self) -> DetectorCheck:
        """Per attempt: the overlap carried between checks and the phrases found."""
        carry = ""
        hits: list[tuple[int, float]] = []  # (end offset in the output, weight)

        def check(view: DriftView) -> float:
            nonlocal carry
            text = (carry + view.new).lower()
            base = view.total - len(text)
            skip = len(carry)
            carry = text[-_CARRY:]
            for match in _META.finditer(text) if _may_meta(text) else ():
                start = match.start()
                if match.end() > skip and (start == 0 or not text[start - 1].isalnum()):
                    weight = self.strong if match.lastgroup == "strong" else self.weak
                    hits.append((base + match.end(), weight))
            oldest = view.total - view.window_chars
            while hits and hits[0][0] < oldest:
                hits.pop(0)
            if not hits:
                return 0.0
            return _clamp(max(w for _, w in hits) + 0.1 * (len(hits) - 1))

        return check


# --- tone shift -------------------------------------------------------------------------------

_UPPER: Final = bytes(range(65, 91))
_LETTERS: Final = bytes(range(65, 91)) + bytes(range(97, 123))
_SLANG: Final = frozenset(
    b"lol lool lmao rofl omg omfg wtf gonna wanna gotta dude bro brb btw tbh idk imo kinda sorta "
    b"yall y'all ain't nah yep yup yeah haha hahaha hehe woo wooo yay cuz gimme lemme".split()
)
# Letters and apostrophes stay, everything else becomes a space: ``bytes.translate`` then
# ``split`` gives the words at C speed (a slang regex cost 100+ us per window).
_WORD_BYTES: Final = bytes(
    c + 32 if 65 <= c <= 90 else c if 97 <= c <= 122 or c == 39 else 32 for c in range(256)
)
_EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")


def _tone(text: str) -> tuple[float, float, float, float]:
    """(uppercase share of letters, ! per 100 chars, slang per 100 words, emoji per 100 chars)."""
    data = text.encode("ascii", "ignore")
    letters = len(data) - len(data.translate(None, _LETTERS))
    upper = len(data) - len(data.translate(None, _UPPER))
    size = max(len(text), 1)
    words = data.translate(_WORD_BYTES).split()
    # Nearly every window has no slang at all: one C-level test instead of a lookup per word.
    slang = 0 if _SLANG.isdisjoint(words) else sum(map(_SLANG.__contains__, words))
    return (
        upper / letters if letters >= 40 else 0.0,
        100 * text.count("!") / size,
        100 * slang / max(len(words), 1),
        # Emoji are not ASCII: skip the scan when encoding dropped nothing.
        100 * len(_EMOJI.findall(text)) / size if len(data) < len(text) else 0.0,
    )


class ToneShift:
    """The register changes: a formal answer turns casual or starts shouting.

    Compares the newer half of the window with the baseline (the first window): the rise in the
    share of capital letters, in exclamation marks, in slang ("lol", "gonna", "dude") and in
    emoji.
    Each rise maps to [0, 1]; shouting and slang weigh 0.75, exclamations and emoji 0.5, and
    the weights combine as independent evidence (``1 - prod(1 - w * s)``), so exclamation
    marks alone never reach the default threshold. Runs on prose only, once the window no
    longer overlaps the baseline.

    Options: ``caps`` (default 0.3): rise in the capital share that scores fully.
    """

    def __init__(self, options: Mapping[str, Any]) -> None:
        opts = _options("tone_shift", options, {"caps": 0.3})
        self.caps = float(opts["caps"])

    def start(self) -> DetectorCheck:
        """Per attempt: the baseline's tone, measured once."""
        base: list[tuple[float, float, float, float]] = []
        kind: list[str] = []

        def check(view: DriftView) -> float:
            if not view.baseline:
                return 0.0
            if not kind:
                kind.append(output_kind(view.baseline))
            if kind[0] != "text" or not view.separate:
                return 0.0
            if not base:
                base.append(_tone(view.baseline))
            b_caps, b_bang, b_slang, b_emoji = base[0]
            caps, bang, slang, emoji = _tone(view.window[-(view.window_chars // 2) :])
            evidence = (
                (0.75, _clamp((caps - b_caps - 0.1) / self.caps)),
                (0.75, _clamp((slang - b_slang - 1.0) / 4.0)),
                (0.5, _clamp((bang - b_bang - 0.3) / 1.2)),
                (0.5, _clamp((emoji - b_emoji - 0.2) / 0.8)),
            )
            quiet = 1.0
            for weight, strength in evidence:
                quiet *= 1 - weight * strength
            return 1 - quiet

        return check


# --- format drift -----------------------------------------------------------------------------

# Unrolled loops (runs of plain characters, then one escape at a time): the same matches as
# ``(?:[^"\\]|\\.)*``, which tries a branch per character and cost 3x more on JSON. Each
# character can be read only one way, so possessive repeats change no match and save the
# regex engine its backtracking bookkeeping (about 13% less per window of JSON).
_STRING_BODY = re.compile(r'[^"\\]*+(?:\\.[^"\\]*+)*+', re.DOTALL)
_STRINGS = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_ASCII_LETTERS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# ASCII letters stay, every other byte becomes a space (non-ASCII characters arrive as "?"):
# ``split`` then gives the runs of ASCII letters, what ``[A-Za-z]+`` finds, at C speed; the
# regex cost about 40 ns per character of JSON punctuation and digits.
_LETTER_RUNS: Final = bytes(c if 65 <= c <= 90 or 97 <= c <= 122 else 32 for c in range(256))
_JSON_WORDS: Final = frozenset({b"true", b"false", b"null"})


def _prose_words(text: str) -> int:
    """Runs of two or more ASCII letters in ``text`` other than ``true``/``false``/``null``."""
    runs = text.encode("ascii", "replace").translate(_LETTER_RUNS).split()
    return sum(1 for w in runs if len(w) > 1 and w not in _JSON_WORDS)


def _blank_strings(text: str) -> tuple[str, str | None]:
    """``text`` with each complete string as one space, and the text after an unclosed quote.

    What ``_STRINGS.sub(" ", text)`` gives, cut at the quote it leaves (``None`` when there is
    none), in about two thirds of its time on JSON: escaped backslashes and quotes become two
    NULs (same length, so offsets hold), then the quotes left pair up, and ``split`` finds
    them in C. Escapes mean something only inside strings: when a NUL lands outside one (a
    backslash outside any string, or a NUL in the text itself), the regex decides instead.
    """
    plain = text
    if "\\" in text:
        if "\0" in text:
            return _blank_strings_regex(text)
        plain = text.replace("\\\\", "\0\0").replace('\\"', "\0\0")
    pieces = plain.split('"')
    if len(pieces) % 2:
        outside = " ".join(pieces[0::2])
        rest = None
    else:
        outside = " ".join(pieces[0:-1:2])
        rest = text[len(text) - len(pieces[-1]) :]
    if plain is not text and "\0" in outside:
        return _blank_strings_regex(text)
    return outside, rest


def _blank_strings_regex(text: str) -> tuple[str, str | None]:
    outside = _STRINGS.sub(" ", text)
    quote = outside.find('"')
    if quote < 0:
        return outside, None
    # Nothing after the quote was blanked: offsets from the end agree with ``text``.
    return outside[:quote], text[len(text) - len(outside) + quote + 1 :]


def _cut_tail_word(text: str) -> int:
    """Where a run of ASCII letters ending ``text`` starts (before one final newline, as ``$``)."""
    end = len(text) - 1 if text.endswith("\n") else len(text)
    start = len(text[:end].rstrip(_ASCII_LETTERS))
    return start if start < end else len(text)


class _JsonTrack:
    """Incremental JSON structure: string state, depth, and words outside any string."""

    __slots__ = ("carry", "closed", "depth", "in_string", "prose_words")

    def __init__(self) -> None:
        self.in_string = False
        self.carry = ""
        self.depth = 0
        self.closed = False
        self.prose_words = 0

    def feed(self, chunk: str) -> None:
        text = self.carry + chunk
        self.carry = ""
        if self.closed:
            self.prose_words += _prose_words(_STRINGS.sub(" ", text))
            return
        if self.in_string:
            end = _STRING_BODY.match(text).end()  # type: ignore[union-attr]
            if end == len(text):
                return
            if text[end] != '"':
                self.carry = text[end:]  # a backslash whose escaped character is still to come
                return
            self.in_string = False
            text = text[end + 1 :]
        # Every complete string becomes one space; a quote left over opens a string that
        # continues in a later chunk (``rest``, the text after that quote).
        outside, rest = _blank_strings(text)
        if rest is not None:
            self.in_string = True
            end = _STRING_BODY.match(rest).end()  # type: ignore[union-attr]
            if end < len(rest):
                self.carry = '"' + rest  # only a trailing backslash stops the match early
                self.in_string = False
        else:
            # A literal cut by the chunk boundary ("t" + "rue") is finished next time.
            cut = _cut_tail_word(outside)
            if cut < len(outside):
                self.carry = outside[cut:]
                outside = outside[:cut]
        opens = outside.count("{") + outside.count("[")
        closes = outside.count("}") + outside.count("]")
        if self.depth + opens - closes <= 0 and (self.depth > 0 or opens):
            self.closed = True
            last = max(outside.rfind("}"), outside.rfind("]"))
            self.prose_words += _prose_words(outside[last + 1 :])
            return
        self.depth += opens - closes
        self.prose_words += _prose_words(outside)


class FormatDrift:
    """The output leaves the format it started in.

    * Started as JSON (first character ``{`` or ``[``): words outside any string other than
      ``true``/``false``/``null`` — prose in the middle of the structure, or after the top-level
      value closed ("Hope this helps!"). Tracked incrementally (string state and depth), so
      each check reads only the new text. ``min_words`` (default 3) such words score 0.8,
      each further word 0.05 more.
    * Started as a markdown list or table (80% of the baseline's lines are items, rows,
      headings or quotes): a full recent window with no such line at all scores 0.75.

    Code (fenced or bare) is not judged: explanations after code are normal.

    Options: ``min_words`` (default 3).
    """

    def __init__(self, options: Mapping[str, Any]) -> None:
        opts = _options("format_drift", options, {"min_words": 3})
        self.min_words = int(opts["min_words"])

    def start(self) -> DetectorCheck:
        """Per attempt: the JSON tracker, or the markdown verdict on the baseline."""
        track = _JsonTrack()
        state: dict[str, Any] = {}

        def check(view: DriftView) -> float:
            kind = state.get("kind")
            if kind is None:
                head = view.head
                if not head.strip():
                    return 0.0
                kind = state["kind"] = output_kind(head)
                # validate() may hand over only the end of a text: the tracker must start at 0.
                state["synced"] = view.total == len(view.new)
            if kind == "json":
                if not state["synced"]:
                    return 0.0
                track.feed(view.new)
                extra = track.prose_words - self.min_words
                return 0.0 if extra < 0 else _clamp(0.8 + 0.05 * extra)
            if kind != "text" or not view.baseline or not view.separate:
                return 0.0
            if "listy" not in state:
                lines = [line for line in view.baseline.splitlines() if line.strip()]
                items = len(_MD_LINE.findall(view.baseline))
                state["listy"] = len(lines) >= 4 and items >= 0.8 * len(lines)
            if state["listy"] and not _MD_LINE.search(view.window):
                return 0.75
            return 0.0

        return check


# --- entropy collapse -------------------------------------------------------------------------


# c * log2(c) for every count a sampled half window can reach: the entropy is then one C-level
# ``map`` over the counts instead of a Python loop with two divisions and a log per character.
_CLOG: Final = tuple(c * math.log2(c) if c else 0.0 for c in range(4097))


def _char_entropy(text: str) -> float:
    # Every third character: a third of the cost; the estimate of a half window moves by about
    # 0.1 bit, far below the margins the scores use.
    sample = text[::3] if len(text) > 256 else text[:4096]
    size = len(sample)
    if not size:
        return 0.0
    return math.log2(size) - sum(map(_CLOG.__getitem__, Counter(sample).values())) / size


def _few_distinct(words: list[str], share: float) -> int | None:
    """The number of distinct words, or ``None`` when it is certainly ``share`` or more of them."""
    # Distinct words among the first ones are a lower bound: ordinary text reaches the share
    # within its first words, and then the rest need not be hashed.
    need = share * len(words)
    if len(set(words[: 2 * int(need) + 2])) >= need:
        return None
    return len(set(words))


class EntropyCollapse:
    """The output loses information: few distinct characters or words in the recent text.

    Three measures over the newer half of the window, the highest wins: character entropy
    below ``min_bits`` (default 2.5; English prose has about 4.1 bits per character, code and
    JSON more); character entropy
    below 55% of the baseline's; and a distinct-word share under 20% of at least 40 words
    (ordinary prose keeps over half its words distinct in a 1 KB window).

    Options: ``min_bits`` (default 2.5).
    """

    def __init__(self, options: Mapping[str, Any]) -> None:
        opts = _options("entropy_collapse", options, {"min_bits": 2.5})
        self.min_bits = float(opts["min_bits"])

    def start(self) -> DetectorCheck:
        """Per attempt: the baseline's entropy, measured once."""
        base: list[float] = []

        def check(view: DriftView) -> float:
            # The newer half of the window: a collapse shows within one check, not two.
            window = view.window[-(view.window_chars // 2) :]
            if len(window) < 128:
                return 0.0
            bits = _char_entropy(window)
            score = _clamp((self.min_bits - bits) / 1.0)
            if view.baseline and view.separate:
                if not base:
                    base.append(_char_entropy(view.baseline))
                if base[0] > 0:
                    score = max(score, _clamp((0.55 - bits / base[0]) / 0.25))
            words = window.split()
            if len(words) >= 40:
                # A share of 0.2 or more scores 0 here and cannot change ``score``.
                distinct = _few_distinct(words, 0.2)
                if distinct is not None:
                    score = max(score, _clamp((0.2 - distinct / len(words)) / 0.12))
            return score

        return check


SPECS: Final = (
    DetectorSpec(
        "repetition", Repetition, "looping: a unit repeated back to back, or repeated sentences"
    ),
    DetectorSpec(
        "meta_commentary", MetaCommentary, 'the model talks about itself ("as an AI", "I cannot")'
    ),
    DetectorSpec("tone_shift", ToneShift, "formal text turning casual, shouting or emoji-laden"),
    DetectorSpec("format_drift", FormatDrift, "JSON or a markdown list turning into prose"),
    DetectorSpec(
        "entropy_collapse", EntropyCollapse, "few distinct characters or words in the window"
    ),
)
"""The detectors this plugin registers."""
