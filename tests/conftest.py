"""Suite-wide setup."""

from __future__ import annotations

import os

# LiteLLM fetches its model cost map from the internet when imported unless told not to, and
# the l0-litellm plugin may be imported by any test that builds a plugin manager. The tests
# never leave 127.0.0.1.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
