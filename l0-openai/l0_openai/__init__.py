"""L0 adapter for the OpenAI Python SDK.

Installing ``l0-openai`` registers, under the ``l0`` entry-point group:

* an adapter that L0 picks automatically for ``openai.AsyncStream`` objects, both chat
  completions (``client.chat.completions.create(stream=True)``) and Responses
  (``client.responses.create(stream=True)``) streams;
* ``l0.wrap(AsyncOpenAI(...), **options)``, which returns a client whose streaming calls return
  ``l0.Result`` objects with retries, fallbacks and timeouts;
* the categorisation of the SDK's exceptions (rate limits, connection errors, 4xx, 5xx).

Importing this package does not import ``openai`` (about 0.4 s): the plugin is loaded in every
process that uses L0, and the SDK is only needed once one of its objects shows up.
"""

from __future__ import annotations

from importlib.util import find_spec

# find_spec looks for the package without importing it (None also when sys.modules says so).
if find_spec("openai") is None:
    raise ImportError(
        "l0-openai needs the OpenAI SDK, which is not installed: pip install 'openai>=1.30' "
        "(or reinstall l0-openai, which depends on it); to run L0 without it, uninstall "
        "l0-openai or set L0_DISABLE_PLUGINS=openai"
    )

from l0_openai.adapter import OpenAIAdapter, ResponsesReader
from l0_openai.client import L0AsyncOpenAI, wrap_client
from l0_openai.plugin import categorize_openai_error

__all__ = [
    "L0AsyncOpenAI",
    "OpenAIAdapter",
    "ResponsesReader",
    "categorize_openai_error",
    "wrap_client",
]
