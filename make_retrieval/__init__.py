"""make-retrieval: text-to-multimodal product retrieval with MAKE (Modal Adaptation, Keyword Enhancement)."""

import os

# Nothing is ever downloaded at run time: every model comes from a local folder or a package.
# Set before transformers / huggingface_hub are imported, which read it once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
