"""make-retrieval: text-to-multimodal product retrieval with MAKE (Modal Adaptation, Keyword Enhancement).

Importing the package changes nothing in the environment: every model is loaded from a local folder
with ``local_files_only``, and the CLI sets ``HF_HUB_OFFLINE`` for what it runs.
"""
