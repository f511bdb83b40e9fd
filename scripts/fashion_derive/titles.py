"""--strip-colour: the colour and pattern words that are removed from titles, so that only the
photo shows a product's colour, the removal itself with its statistics, and the clean_titles stage."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from typing import NamedTuple

import pandas as pd

from .vocabulary import COLOUR_WORDS, NO_COLOUR_TYPES, colour_words

# Colour names in titles besides the words of the catalog's base_colour values and COLOUR_WORDS
# (shades, typos, run-together forms), chosen from the real titles.
EXTRA_COLOUR_WORDS = frozenset(
    {
        "golden",
        "gunmetal",
        "metalic",
        "sliver",
        "offwhite",
        "multicolored",
        "multicoloured",
        "indigo",
        "ivory",
        "coral",
        "aqua",
        "wine",
        "plum",
        "lemon",
        "mint",
        "fuchsia",
        "fushia",
        "fuschia",
        "violet",
        "crimson",
        "chocolate",
        "heather",
        "blues",
        "camel",
        "choco",
        "caramel",
        "cherry",
        "berry",
        "raspberry",
        "grape",
    }
)
# Removed only right before a removed colour word ("light blue", "off white", "sea green",
# "gun metal grey"): alone they are other words ("Off Shoulder", "Sky Ball").
COLOUR_MODIFIERS = frozenset(
    {
        "light",
        "lt",
        "dark",
        "dk",
        "deep",
        "bright",
        "pale",
        "sky",
        "sea",
        "off",
        "neon",
        "royal",
        "baby",
        "dusky",
        "gun",
    }
)
# Removed only right after a removed colour word ("Multi Coloured", "Gold-Toned", "Gold Colour").
COLOUR_SUFFIXES = frozenset({"coloured", "colored", "colour", "color", "toned", "tone", "shade"})
PATTERN_WORDS = frozenset(
    {
        "printed",
        "print",
        "prints",
        "solid",
        "check",
        "checks",
        "chk",
        "checked",
        "checkered",
        "checkerd",
        "striped",
        "stripes",
        "stripe",
        "striper",
        "stripper",
        "stripped",
        "strips",
        "pinstripe",
        "pinstriped",
        "graphic",
        "melange",
        "floral",
        "florals",
        "polka",
        "dot",
        "dots",
        "dotted",
        "gingham",
        "plaid",
        "plaids",
        "plaided",
        "tartan",
        "camouflage",
        "camo",
        "leopard",
        "zebra",
        "chevron",
        "paisley",
        "abstract",
        "geometric",
        "ombre",
        "textured",
        "patterned",
        "pattern",
        "colourblocked",
        "colorblocked",
        "colourblock",
        "colorblock",
        "embroidered",
        "embroidery",
        "embroided",
        "embroidary",
        "kalamkari",
        "ajrakh",
        "ikat",
        "batik",
        "bandhani",
        "leheriya",
        "houndstooth",
        "argyle",
        "herringbone",
        "heathered",
        "halftone",
        "dye",
        "dyed",
    }
)
# Removed only right before a removed pattern word ("Flower Print", "Self Striped", "Yarn Dyed").
PATTERN_MODIFIERS = frozenset({"flower", "animal", "self", "yarn", "dip", "garment", "tie"})
# Multi-word patterns and colours, matched on consecutive words.
STRIP_PHRASES: dict[tuple[str, ...], str] = {
    ("self", "design"): "pattern",
    ("tie", "and", "dye"): "pattern",
    ("tie", "&", "dye"): "pattern",
    ("tie", "n", "dye"): "pattern",
    ("colour", "block"): "pattern",
    ("color", "block"): "pattern",
    ("colour", "blocked"): "pattern",
    ("color", "blocked"): "pattern",
    ("gun", "metal"): "colour",
}
# Brand names whose words would otherwise be EXTRA_COLOUR_WORDS: kept. (Brand words that are
# base colours, e.g. "Red Tape", "Red Rose", are removed like any colour word.)
KEEP_PHRASES = frozenset({("indigo", "nation"), ("ivory", "tag"), ("miami", "blues")})
# Colour words that are the product's noun in titles of NO_COLOUR_TYPES ("Day Cream", "Skin
# Polisher"), which get no colour queries: kept there.
NO_COLOUR_KEEP = frozenset({"cream", "skin"})
# "Multi-Dial", "multi function": not a colour.
MULTI_NOT_COLOUR = frozenset({"dial", "function", "functional", "purpose", "utility", "pack", "pocket"})
# Between two removed words: removed too ("Black & White Striped").
COLOUR_JOINERS = frozenset({"&", "and", "/", "n", "+"})
# What a word is for --strip-colour when it is not in the colour vocabulary: the first set holding it.
_WORD_CLASSES: tuple[tuple[str, frozenset[str]], ...] = (
    ("pattern", PATTERN_WORDS),
    ("cmod", COLOUR_MODIFIERS),
    ("pmod", PATTERN_MODIFIERS),
    ("suffix", COLOUR_SUFFIXES),
    ("joiner", COLOUR_JOINERS),
)
_SUBWORD_RE = re.compile(r"([-/.+&])")
_CORE_STRIP = "()[]{},;:!?\"'*"


def colour_vocabulary(base_colours) -> frozenset[str]:
    """Single words removed by --strip-colour as colours: every word of the catalog's base_colour
    values and of COLOUR_WORDS, plus EXTRA_COLOUR_WORDS, less COLOUR_MODIFIERS ("off", "sea")."""
    words = set(EXTRA_COLOUR_WORDS)
    for c in base_colours:
        words.update(c.lower().split())
    for syns in COLOUR_WORDS.values():
        for s in syns:
            words.update(w for w in re.split(r"[\s-]+", s) if w)
    return frozenset(w for w in words if w and w not in COLOUR_MODIFIERS)


def _classify(cores: list[str], vocab: frozenset[str]) -> list[str]:
    """Per word: "colour", "pattern", "cmod", "pmod", "suffix", "joiner" or "word"."""
    n = len(cores)
    classes = (("colour", vocab), *_WORD_CLASSES)
    kinds = [next((kind for kind, words in classes if c in words), "word") for c in cores]
    for i, c in enumerate(cores):
        if c == "multi" and i + 1 < n and cores[i + 1] in MULTI_NOT_COLOUR:
            kinds[i] = "word"
    # phrases last, the ones to keep after the ones to strip
    phrases = [*sorted(STRIP_PHRASES.items()), *((phrase, "word") for phrase in sorted(KEEP_PHRASES))]
    for phrase, kind in phrases:
        k = len(phrase)
        for i in range(n - k + 1):
            if tuple(cores[i : i + k]) == phrase:
                kinds[i : i + k] = [kind] * k
    return kinds


def _words(title: str) -> list[tuple[int, str, str]]:
    """(whitespace token index, separator before it inside the token, text) per word; a token
    like "Off-White" or "Chinosdk.Cream" is split into its words."""
    out = []
    for ti, tok in enumerate(title.split()):
        parts = _SUBWORD_RE.split(tok)
        sep = ""
        for p in parts:
            if _SUBWORD_RE.fullmatch(p):
                sep += p
            elif p:
                out.append((ti, sep, p))
                sep = ""
        if sep and not any(o[0] == ti for o in out):  # a token of separators only ("/", "+")
            out.append((ti, "", sep))
    return out


def _removed(cores: list[str], vocab: frozenset[str]) -> list[bool]:
    """Per word: removed or not. Colour and pattern words, then the modifiers, suffixes and joiners next to them."""
    kinds = _classify(cores, vocab)
    rm = [k in ("colour", "pattern") for k in kinds]
    changed = True
    while changed:
        changed = False
        for i, k in enumerate(kinds):
            if rm[i]:
                continue
            nxt = i + 1 < len(kinds) and rm[i + 1]
            prev = i > 0 and rm[i - 1]
            if (
                (k == "cmod" and nxt and kinds[i + 1] in ("colour", "cmod"))
                or (k == "pmod" and nxt and kinds[i + 1] in ("pattern", "pmod"))
                or (k == "suffix" and prev and kinds[i - 1] in ("colour", "suffix"))
                or (k == "joiner" and prev and nxt)
            ):
                rm[i] = changed = True
    return rm


def _core(text: str) -> str:
    """A word lowercased without the punctuation around it, as it is looked up."""
    return text.lower().strip(_CORE_STRIP)


def strip_colour(title: str, vocab: frozenset[str]) -> str:
    """The title without colour and pattern words (whole words, case-insensitive), whitespace
    collapsed: "Titan Women Silver Watch" -> "Titan Women Watch", "Puma Men Navy Blue & White
    Striped Polo T-shirt" -> "Puma Men Polo T-shirt"."""
    words = _words(title)
    rm = _removed([_core(w) for _, _, w in words], vocab)
    hit = {ti for (ti, _, _), r in zip(words, rm, strict=True) if r}
    tokens = {ti: tok for ti, tok in enumerate(title.split()) if ti not in hit}  # untouched: verbatim
    for (ti, sep, w), r in zip(words, rm, strict=True):
        if ti in hit and not r:
            tokens[ti] = tokens[ti] + sep + w if ti in tokens else w
    return " ".join(tokens[ti] for ti in sorted(tokens))


def colour_words_in(title: str, vocab: frozenset[str]) -> list[str]:
    """The colour and pattern words that strip_colour would remove from `title`."""
    words = _words(title)
    rm = _removed([_core(w) for _, _, w in words], vocab)
    return [w for (_, _, w), r in zip(words, rm, strict=True) if r]


def strip_titles(titles: list[str], article_types: list[str], catalog_colours: list[str]) -> tuple[list[str], dict]:
    """--strip-colour on every title, with statistics. In titles of NO_COLOUR_TYPES (skin care,
    fragrances: no colour queries) the product nouns of NO_COLOUR_KEEP stay ("Night Cream", "Skin
    Polisher"). A title left empty becomes its article type. `titles_with_query_colour_word_after`
    searches, independently of strip_colour, every colour word a query can contain (colour_words of
    each base colour) as a whole word, in the titles of the types that get colour queries."""
    vocab = colour_vocabulary(catalog_colours)
    vocab_no_colour_type = vocab - NO_COLOUR_KEEP
    query_colours = sorted({w for c in catalog_colours for w in colour_words(c)})
    query_re = re.compile(r"(?<![a-z])(" + "|".join(re.escape(w) for w in query_colours) + r")(?![a-z])")
    out, removed, n_empty, n_before, n_after, nq_before, nq_after, n_kept = [], Counter(), 0, 0, 0, 0, 0, 0
    for title, t in zip(titles, article_types, strict=True):
        v = vocab_no_colour_type if t in NO_COLOUR_TYPES else vocab
        words = colour_words_in(title, v)
        removed.update(_core(w) for w in words)
        new = strip_colour(title, v)
        if not new:
            new, n_empty = t, n_empty + 1
        out.append(new)
        n_before += bool(words)
        n_after += bool(colour_words_in(new, v))
        if t in NO_COLOUR_TYPES:
            n_kept += bool(colour_words_in(new, vocab))
        else:
            nq_before += bool(query_re.search(title.lower()))
            nq_after += bool(query_re.search(new.lower()))
    n_words = [len(t.split()) for t in titles]
    n_words_after = [len(t.split()) for t in out]
    stats = {
        "titles_changed": sum(a != " ".join(b.split()) for a, b in zip(out, titles, strict=True)),
        "titles_with_colour_or_pattern_word_before": n_before,
        "titles_with_colour_or_pattern_word_after": n_after,
        "titles_with_query_colour_word_before": nq_before,
        "titles_with_query_colour_word_after": nq_after,
        "no_colour_type_titles_keeping_a_product_noun": n_kept,
        "titles_emptied_replaced_by_article_type": n_empty,
        "title_words_mean_before": round(statistics.fmean(n_words), 2) if n_words else 0,
        "title_words_mean_after": round(statistics.fmean(n_words_after), 2) if n_words else 0,
        "removed_words": dict(sorted(removed.items(), key=lambda kv: (-kv[1], kv[0]))),
        "colour_words": sorted(vocab),
        "pattern_words": sorted(PATTERN_WORDS),
    }
    return out, stats


class Titles(NamedTuple):
    """The title column of products.parquet, and --strip-colour's statistics (None without it)."""

    titles: list[str]
    strip_stats: dict | None

    @property
    def stripped(self) -> bool:
        """True with --strip-colour."""
        return self.strip_stats is not None


def clean_titles(products: pd.DataFrame, catalog_colours: list[str], strip: bool) -> Titles:
    """The titles as they are, or without colour and pattern words (--strip-colour) so only the photo shows them."""
    titles = list(products["title"])
    if not strip:
        return Titles(titles, None)
    return Titles(*strip_titles(titles, list(products["article_type"]), catalog_colours))
