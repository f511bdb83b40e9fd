"""The stages of scripts/derive_fashion_queries.py and scripts/derive_protocol.py (their main() runs
them), one module per concern:

    cli         the command line and its Options
    vocabulary  shopper words per attribute value, intent kinds, Intent, the gender of a title
    sampling    seeded sampling (rng_for) and proportional allocation
    catalog     the source folder: reading the catalog, choosing products, photos in the archive
    titles      --strip-colour: colour and pattern words removed from titles
    queries     intents and their query strings
    relevance   the relevance grade of a product for an intent, and the index that computes it
    pairs       the train/valid/test split, simulated clicks, capped and graded eval queries
    derive      the stages from the catalog to the pairs, shared by both scripts, with a splitter
    output      the photos and parquet tables of the output directory
    report      stats.json, README.md and the printed summary
    protocol    the splits of derive_protocol.py (issue 21) and how each is built
    protocol_splits  their splitters: a click log cut to a budget, compositional and held-out types
    protocol_text    the Splits section of their README.md

Not installed: the scripts put this folder's parent on sys.path. Needs pandas, a dev extra that
make_retrieval does not depend on: without it, importing the package stops with how to install it.
"""

try:
    import pandas  # noqa: F401  (every stage uses it)
except ModuleNotFoundError as e:
    if e.name != "pandas":
        raise
    raise SystemExit("scripts/fashion_derive needs pandas: pip install -e '.[dev]'") from None
