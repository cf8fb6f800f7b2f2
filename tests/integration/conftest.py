"""Cross-distribution tests: real SDKs over real HTTP against ``l0.testing.ChaosServer``."""

from __future__ import annotations

import os

# LiteLLM fetches its model cost map from the internet at import time unless told not to; the
# tests never leave 127.0.0.1. Set here, before any test module imports litellm.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
