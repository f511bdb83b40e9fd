"""The stages of scripts/derive_fashion_queries.py (its main() runs them), one module per concern:

    cli         the command line and its Options
    vocabulary  shopper words per attribute value, intent kinds, Intent, the gender of a title
    sampling    seeded sampling (rng_for) and proportional allocation
    catalog     the source folder: reading the catalog, choosing products, photos in the archive
    titles      --strip-colour: colour and pattern words removed from titles
    queries     intents and their query strings
    relevance   the relevance grade of a product for an intent, and the index that computes it
    pairs       the train/valid/test split, simulated clicks, capped and graded eval queries
    output      the photos and parquet tables of the output directory
    report      stats.json, README.md and the printed summary

Not installed: the script puts this folder's parent on sys.path.
"""
