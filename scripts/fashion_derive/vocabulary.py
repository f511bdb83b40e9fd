"""The query vocabulary: how a shopper types each attribute value, which article types get which
intent kinds, the Intent tuple, and the gender parsed from a title. Shared by query derivation,
relevance grading and --strip-colour."""

from __future__ import annotations

import re
from typing import NamedTuple

# --------------------------------------------------------------------------------------------
# Vocabulary: how a shopper types each attribute value. The first word is the canonical one.
# --------------------------------------------------------------------------------------------

TYPE_WORDS: dict[str, list[str]] = {
    "Tshirts": ["tshirt", "t-shirt", "tee", "t shirt", "tshirts"],
    "Shirts": ["shirt", "shirts"],
    "Casual Shoes": ["casual shoes", "sneakers"],
    "Watches": ["watch", "watches", "wrist watch"],
    "Sports Shoes": ["sports shoes", "running shoes", "sport shoes"],
    "Kurtas": ["kurta", "kurtas"],
    "Tops": ["top", "tops"],
    "Handbags": ["handbag", "purse", "handbags"],
    "Heels": ["heels", "high heels"],
    "Sunglasses": ["sunglasses", "shades"],
    "Wallets": ["wallet", "wallets"],
    "Flip Flops": ["flip flops", "slippers", "flipflops"],
    "Sandals": ["sandals"],
    "Briefs": ["briefs", "underwear"],
    "Belts": ["belt", "belts"],
    "Backpacks": ["backpack", "school bag", "backpacks"],
    "Socks": ["socks"],
    "Formal Shoes": ["formal shoes", "office shoes"],
    "Perfume and Body Mist": ["perfume", "body mist", "fragrance"],
    "Jeans": ["jeans", "denims"],
    "Shorts": ["shorts"],
    "Trousers": ["trousers", "pants"],
    "Flats": ["flats", "ballerinas"],
    "Bra": ["bra"],
    "Dresses": ["dress", "dresses"],
    "Sarees": ["saree", "sari"],
    "Earrings": ["earrings"],
    "Deodorant": ["deodorant", "deo"],
    "Track Pants": ["track pants", "joggers", "trackpants"],
    "Clutches": ["clutch"],
    "Sweatshirts": ["sweatshirt", "hoodie"],
    "Caps": ["cap", "caps"],
    "Nail Polish": ["nail polish", "nail paint"],
    "Sweaters": ["sweater", "pullover"],
    "Ties": ["tie"],
    "Lipstick": ["lipstick"],
    "Jackets": ["jacket"],
    "Innerwear Vests": ["vest", "innerwear vest"],
    "Kurtis": ["kurti"],
    "Tunics": ["tunic"],
    "Nightdress": ["nightdress", "nighty"],
    "Leggings": ["leggings"],
    "Pendant": ["pendant"],
    "Capris": ["capris"],
    "Necklace and Chains": ["necklace", "chain"],
    "Night suits": ["night suit", "pyjamas"],
    "Trunk": ["trunks"],
    "Skirts": ["skirt"],
    "Scarves": ["scarf"],
    "Ring": ["ring"],
    "Dupatta": ["dupatta"],
    "Lip Gloss": ["lip gloss"],
    "Cufflinks": ["cufflinks"],
    "Kajal and Eyeliner": ["kajal", "eyeliner"],
    "Kurta Sets": ["kurta set"],
    "Stoles": ["stole"],
    "Duffel Bag": ["duffel bag", "gym bag"],
    "Laptop Bag": ["laptop bag"],
    "Foundation and Primer": ["foundation", "primer"],
    "Sports Sandals": ["sports sandals"],
    "Lounge Pants": ["lounge pants"],
    "Jewellery Set": ["jewellery set", "jewelry set"],
    "Boxers": ["boxers"],
    "Face Moisturisers": ["face moisturiser", "moisturizer"],
    "Highlighter and Blush": ["blush", "highlighter"],
    "Camisoles": ["camisole"],
    "Lounge Shorts": ["lounge shorts"],
    "Jeggings": ["jeggings"],
    "Tracksuits": ["tracksuit"],
    "Gloves": ["gloves"],
    "Stockings": ["stockings"],
    "Suspenders": ["suspenders"],
    "Swimwear": ["swimwear", "swimsuit"],
    "Bath Robe": ["bathrobe", "bath robe"],
}

# Article types for which no shopper query is simulated (the products stay in the catalog).
NO_QUERY_TYPES = frozenset({"Free Gifts"})
# Types whose colour is the packaging's, not something a shopper asks for: no colour intents.
NO_COLOUR_TYPES = frozenset(
    {
        "Perfume and Body Mist",
        "Deodorant",
        "Fragrance Gift Set",
        "Face Moisturisers",
        "Sunscreen",
        "Face Wash and Cleanser",
        "Mask and Peel",
        "Body Lotion",
        "Face Serum and Gel",
        "Toner",
        "Eye Cream",
        "Face Scrub and Exfoliator",
        "Makeup Remover",
        "Body Wash and Scrub",
        "Mens Grooming Kit",
    }
)
# Master categories where "casual"/"formal"/... is not how shoppers ask: no usage intents.
NO_USAGE_MASTER = frozenset({"Personal Care", "Free Items"})
# No gender intents for an article type whose titles name no gender for more than this share of
# its products (sarees, bras, lipsticks, ...): their relevance would be unreliable.
MAX_UNKNOWN_GENDER = 0.2

COLOUR_WORDS: dict[str, list[str]] = {
    "Navy Blue": ["navy blue", "navy"],
    "Grey": ["grey", "gray"],
    "Multi": ["multicolour", "multicolor"],
    "Off White": ["off white", "off-white"],
    "Turquoise Blue": ["turquoise blue", "turquoise"],
    "Fluorescent Green": ["fluorescent green", "neon green"],
}

# Query gender -> product genders (parsed from titles) that match it.
GENDER_WORDS: dict[str, list[str]] = {
    "Men": ["men", "mens"],
    "Women": ["women", "womens"],
    "Boys": ["boys"],
    "Girls": ["girls"],
}
GENDER_MATCHES: dict[str, frozenset[str]] = {
    "Men": frozenset({"Men", "Unisex"}),
    "Women": frozenset({"Women", "Unisex"}),
    "Boys": frozenset({"Boys"}),
    "Girls": frozenset({"Girls"}),
}

USAGE_WORDS: dict[str, list[str]] = {
    "Casual": ["casual"],
    "Formal": ["formal"],
    "Sports": ["sports", "sport"],
    "Party": ["party"],
    "Ethnic": ["ethnic"],
}

# Intent kinds: which attributes besides the article type a query names.
KINDS: list[tuple[str, tuple[str, ...]]] = [
    ("type", ()),
    ("colour+type", ("colour",)),
    ("gender+type", ("gender",)),
    ("gender+colour+type", ("gender", "colour")),
    ("usage+type", ("usage",)),
    ("gender+usage+type", ("gender", "usage")),
    ("colour+usage+type", ("colour", "usage")),
    ("gender+colour+usage+type", ("gender", "colour", "usage")),
]
_KIND_OF = {attrs: kind for kind, attrs in KINDS}

# Gender words in titles -> product gender. "Mr. Men" / "Mr.Men" is a brand, removed first.
_GENDER_RE = re.compile(r"\b(men|mens|women|womens|boys?|girls?|unisex)\b", re.IGNORECASE)
_GENDER_CANON = {
    "men": "Men",
    "mens": "Men",
    "women": "Women",
    "womens": "Women",
    "boy": "Boys",
    "boys": "Boys",
    "girl": "Girls",
    "girls": "Girls",
    "unisex": "Unisex",
}
_BRAND_RE = re.compile(r"\bMr\.\s*Men\b", re.IGNORECASE)


class Intent(NamedTuple):
    """What a shopper asks for: an article type plus optionally a colour, a gender and a usage."""

    article_type: str
    colour: str = ""
    gender: str = ""
    usage: str = ""

    @property
    def kind(self) -> str | None:
        """The intent kind (a name in KINDS), or None for a combination not in KINDS."""
        return _KIND_OF.get(tuple(a for a in ("gender", "colour", "usage") if getattr(self, a)))

    @property
    def key(self) -> str:
        """A string naming the intent, for seeding its random choices."""
        return f"{self.article_type}|{self.colour}|{self.gender}|{self.usage}"


def parse_gender(title: str) -> str | None:
    """The product gender a title names (Men, Women, Boys, Girls, Unisex), or None if it names none."""
    m = _GENDER_RE.search(_BRAND_RE.sub(" ", title))
    return _GENDER_CANON[m.group(1).lower()] if m else None


def type_words(article_type: str) -> list[str]:
    """Shopper words for an article type, canonical first: TYPE_WORDS, else the name lowercased, singular."""
    if article_type in TYPE_WORDS:
        return TYPE_WORDS[article_type]
    words = article_type.lower().split()
    last = words[-1]
    if last.endswith("s") and not last.endswith(("ss", "us")) and len(last) > 3:
        words[-1] = last[:-1]
    return [" ".join(words)]


def colour_words(colour: str) -> list[str]:
    """Shopper words for a base colour, canonical first: COLOUR_WORDS, else the name lowercased."""
    return COLOUR_WORDS.get(colour, [colour.lower()])


def usage_in_type_name(article_type: str) -> bool:
    """True for types like "Casual Shoes": a usage query on top would repeat the word."""
    name = article_type.lower().split()
    return any(u.lower() in name for u in USAGE_WORDS)
