"""The LLM agent's settings and prompts: what it sends, to which model, within which limits.

Apart from envs/agents/llm.py so the mini-swe-agent glue (mini_run.py) can read them without importing
the agent back. Every field but the endpoint's address, key and retry policy is part of the identity.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hrm_spawn.envs.config import StrictModel

LOOP = "mini-swe-agent-2"  # part of the identity: another loop is another agent

_SYSTEM_HEAD = """\
You are fixing a bug in a software repository through a bash shell."""

_SYSTEM_TAIL = """\
The command runs in a fresh subshell in the repository root; its exit code and output come back to you.
Directory changes and variables do not persist between commands. Use non-interactive commands only (no
editors, no pagers). Edit files with sed, python or cat <<'EOF'.
When the fix is complete and the failing tests pass, run exactly: echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT
Your changes in the working tree are the answer: do not commit them, do not edit the tests."""

SYSTEM_TEMPLATE = f"""{_SYSTEM_HEAD}
Answer every time with a short explanation of what you will do next, followed by exactly one shell
command in a ```bash code block.
{_SYSTEM_TAIL}"""

TOOL_SYSTEM_TEMPLATE = f"""{_SYSTEM_HEAD}
Answer every time with a short explanation of what you will do next and one call of the bash tool.
{_SYSTEM_TAIL}"""

INSTANCE_TEMPLATE = """\
Repository: {{repo}}, checked out at {{repo_dir}} (the working directory of every command).

{{task}}

These tests fail and must pass after your fix:
{{failing_tests}}

Run tests with: python -m pytest -q <test id>"""

ACTION_REGEX = r"```(?:bash|sh)\s*\n(.*?)\n```"
FORMAT_ERROR_TEMPLATE = (
    "Your reply must contain exactly one ```bash block ({{actions|length}} found). "
    "Reply again with one command, or run `echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT` when you are done."
)
TOOL_FORMAT_ERROR_TEMPLATE = (
    "{{error}} Call the bash tool with one command, "
    "or run `echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT` with it when you are done."
)


# litellm providers that speak the OpenAI protocol to a base_url; any other name behind base_url is the
# server's own model name
_COMPATIBLE_PREFIXES = ("openai/", "hosted_vllm/", "llamafile/", "lm_studio/", "ollama/", "ollama_chat/")


class LLMConfig(StrictModel):
    """The LLM agent's kwargs. Everything but the endpoint's address, key and retry policy is identity."""

    model: str = "gpt-4o-mini"  # litellm's name; with base_url, the name the server knows (see litellm_model)
    base_url: str | None = None  # an OpenAI-compatible server (vLLM, llama.cpp); None: the provider's API
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this environment variable, never from config
    endpoint_family: str | None = None  # identity: default the provider prefix (openai, anthropic, ...)
    temperature: float = Field(0.0, ge=0)
    max_reply_tokens: int = Field(2048, ge=1)
    action_format: Literal["text", "tool"] = "text"  # a ```bash block per reply, or a `bash` tool call
    system_template: str | None = None  # None: the default for the action format
    instance_template: str = INSTANCE_TEMPLATE
    action_regex: str = ACTION_REGEX  # text format only
    command_timeout_s: float = Field(60.0, gt=0)
    max_output_chars: int = Field(10_000, ge=200)
    max_format_errors: int = Field(3, ge=0)  # consecutive replies without one command; 0 = no limit
    delegation_tests: bool = True  # tell a delegated agent how the failing tests fare on the start patch
    visible_check: bool = True  # run the failing tests on the candidate at the end (AgentResult.visible)
    # USD per million tokens where litellm does not know the model (or always, with price_source=table)
    price_in_per_mtok: float | None = Field(None, ge=0)
    price_out_per_mtok: float | None = Field(None, ge=0)
    price_source: Literal["auto", "table"] = "auto"
    # not identity: how to reach the endpoint
    request_timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(2, ge=0)
    retry_wait_s: float = Field(2.0, ge=0)

    def litellm_model(self) -> str:
        """The model name litellm routes by: behind ``base_url`` the server's own name, sent as
        ``openai/<name>`` (``Qwen/Qwen2.5-Coder-7B-Instruct`` is a vLLM model, not a provider ``Qwen``)."""
        if self.base_url and not self.model.startswith(_COMPATIBLE_PREFIXES):
            return f"openai/{self.model}"
        return self.model

    def system(self) -> str:
        if self.system_template is not None:
            return self.system_template
        return TOOL_SYSTEM_TEMPLATE if self.action_format == "tool" else SYSTEM_TEMPLATE

    def format_error(self) -> str:
        return TOOL_FORMAT_ERROR_TEMPLATE if self.action_format == "tool" else FORMAT_ERROR_TEMPLATE

    def family(self) -> str:
        if self.endpoint_family:
            return self.endpoint_family
        model = self.litellm_model()
        return model.split("/", 1)[0] if "/" in model else "default"


_NOT_IDENTITY = {
    "base_url",
    "api_key_env",
    "endpoint_family",
    "request_timeout_s",
    "max_retries",
    "retry_wait_s",
}


# What the model reads after each command: the exit code first, so a failing test run is obvious.
OBSERVATION_TEMPLATE = (
    "{% if output.exception_info %}{{output.exception_info}}\n{% endif %}"
    "exit code: {{output.returncode}}\n{{output.output}}"
)
