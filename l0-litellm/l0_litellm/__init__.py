"""L0 adapter for LiteLLM.

Installing ``l0-litellm`` registers, under the ``l0`` entry-point group, an adapter that L0
picks automatically for the stream ``litellm.acompletion(..., stream=True)`` returns (a
``CustomStreamWrapper`` of OpenAI-shaped chunks, whatever the provider), and the
categorisation of LiteLLM's exceptions.

LiteLLM takes seconds to import, so neither this package nor its plugin imports it: the
adapter recognises LiteLLM objects by their class, and only once LiteLLM is loaded.
"""

from __future__ import annotations

from importlib.util import find_spec

# find_spec looks for the package without importing it (None also when sys.modules says so).
if find_spec("litellm") is None:
    raise ImportError(
        "l0-litellm needs LiteLLM, which is not installed: pip install 'litellm>=1.40' "
        "(or reinstall l0-litellm, which depends on it); to run L0 without it, uninstall "
        "l0-litellm or set L0_DISABLE_PLUGINS=litellm"
    )

from l0_litellm.adapter import LiteLLMAdapter
from l0_litellm.client import L0LiteLLM, default_strategies
from l0_litellm.plugin import categorize_litellm_error

__all__ = ["L0LiteLLM", "LiteLLMAdapter", "categorize_litellm_error", "default_strategies"]
