"""Adapters from the shapes inference stacks already produce to allocation events v1.

- :mod:`pipeline.integrations.usage`: an OpenAI-style ``usage`` (Chat Completions or Responses)
  to event fields;
- :mod:`pipeline.integrations.litellm`: a LiteLLM ``CustomLogger`` (needs the ``litellm`` extra).
"""
