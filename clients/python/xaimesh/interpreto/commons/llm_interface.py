"""interpreto.commons.llm_interface (0.4: interpreto.model_wrapping.llm_interface).

``OpenAILLM(api_key, model="gpt-4.1-nano", num_try=5)`` is the native
OpenAILLM (the labeling-service calls the endpoint; the key travels in call
metadata only); ``num_try`` tries = 1 + the native ``max_retries``. With no
key the labels come from the model-server's own model, as in the native SDK.
A user's own ``LLMInterface`` subclass labels concepts too: the
labeling-service builds the prompts and sends them back over a
bidirectional stream; ``generate(prompt)`` runs in the user's process
(``xaimesh.llm.CallerLLM``), one call at a time.
"""

from __future__ import annotations

import abc
from enum import Enum

from xaimesh import llm as native

__all__ = ["LLMInterface", "OpenAILLM", "Role"]


class Role(Enum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class LLMInterface(abc.ABC):
    """interpreto's LLM interface: ``generate(prompt)`` with prompt a list of
    (Role, text) pairs, returning the reply or None."""

    @abc.abstractmethod
    def generate(self, prompt: list[tuple[Role, str]]) -> str | None:
        raise NotImplementedError


class OpenAILLM(native.OpenAILLM):
    def __init__(self, api_key: str | None = None, model: str = "gpt-4.1-nano", num_try: int = 5, **kwargs) -> None:
        if int(num_try) != num_try or num_try < 1:
            raise ValueError(f"num_try must be an integer >= 1, got {num_try!r}")
        super().__init__(api_key=api_key, model=model, max_retries=int(num_try) - 1, **kwargs)


LLMInterface.register(native.LLMInterface)  # the mesh's LLMs are interpreto LLM interfaces
