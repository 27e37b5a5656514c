"""interpreto 0.4's model_wrapping.llm_interface (0.5: commons.llm_interface)."""

from ..commons.llm_interface import LLMInterface, OpenAILLM, Role

__all__ = ["LLMInterface", "OpenAILLM", "Role"]
