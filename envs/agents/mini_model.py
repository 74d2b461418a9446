"""mini-swe-agent's text-based litellm model, with measured costs and endpoint faults kept apart.

Differences from ``LitellmTextbasedModel`` (its parsing and observation formatting are kept):

- tokens in/out are counted from each response's ``usage``; USD comes from litellm's price map where it
  knows the model, else from the agent config's price table (0 when neither knows it, with a note);
- mini-swe-agent retries a failing request up to 10 times with waits of up to a minute; here a short,
  configured number of retries for transient faults (connection, timeout, HTTP 429/5xx), then
  ``EndpointError``: an endpoint that is down or misconfigured is an infrastructure failure, never the
  agent's outcome;
- an exhausted context window is the agent's own outcome (``ContextWindowError``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from hrm_spawn.envs.agents.mini_imports import litellm, minisweagent
from hrm_spawn.envs.failures import EndpointError

minisweagent()
_litellm = litellm()
import openai  # noqa: E402 (litellm's exceptions derive from openai's)
from minisweagent.exceptions import FormatError  # noqa: E402
from minisweagent.models.litellm_model import LitellmModel  # noqa: E402
from minisweagent.models.litellm_textbased_model import LitellmTextbasedModel  # noqa: E402


class ContextWindowError(RuntimeError):
    """The conversation outgrew the model's context window: the agent's own outcome."""


@dataclass
class Usage:
    """What the model calls of one run cost."""

    tokens_in: int = 0
    tokens_out: int = 0
    money_usd: float = 0.0
    calls: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class EndpointSettings:
    """Where and how to call the model; built by the LLM agent from its config."""

    model: str  # litellm's model name, provider prefix included (``openai/gpt-4o-mini``)
    base_url: str | None
    api_key: str | None
    temperature: float
    max_reply_tokens: int
    request_timeout_s: float
    max_retries: int
    retry_wait_s: float
    price_in_per_mtok: float | None
    price_out_per_mtok: float | None
    price_source: str  # "auto": litellm's map, else the table; "table": the table only
    seed: int | None = None


class _Measured:
    """What both action formats share: the request settings, measured usage, ``EndpointError`` on faults.

    Mixed in before a mini-swe-agent litellm model, whose parsing and observation formatting it keeps.
    """

    _query: Any
    _parse_actions: Any
    _prepare_messages_for_api: Any

    def __init__(self, settings: EndpointSettings, **config: Any):
        kwargs: dict[str, Any] = {
            "temperature": settings.temperature,
            "max_tokens": settings.max_reply_tokens,
            "timeout": settings.request_timeout_s,
            "num_retries": 0,  # retries are ours (see query)
            "drop_params": True,  # an endpoint that does not take `seed` gets the request without it
        }
        if settings.base_url:
            kwargs["api_base"] = settings.base_url
        if settings.api_key:
            kwargs["api_key"] = settings.api_key
        if settings.seed is not None:
            kwargs["seed"] = settings.seed
        super().__init__(  # type: ignore[call-arg]
            model_name=settings.model, model_kwargs=kwargs, cost_tracking="ignore_errors", **config
        )
        self.settings = settings
        self.usage = Usage()

    def query(self, messages: list[dict[str, str]], **kwargs: Any) -> dict:
        response = self._ask(self._prepare_messages_for_api(messages), **kwargs)
        cost = self._account(response)
        try:
            actions = self._parse_actions(response)
        except FormatError as exc:  # the reply was paid for: keep its cost with the format error
            exc.messages[0]["extra"].update(cost=cost)
            raise
        message = response.choices[0].message.model_dump()
        message["extra"] = {"actions": actions, "cost": cost, "timestamp": time.time()}
        return message

    def _ask(self, messages: list[dict], **kwargs: Any) -> Any:
        s = self.settings
        for attempt in range(s.max_retries + 1):
            try:
                return self._query(messages, **kwargs)
            except _litellm.exceptions.ContextWindowExceededError as exc:
                raise ContextWindowError(f"the conversation outgrew the context window of {s.model}") from exc
            except openai.OpenAIError as exc:
                if transient(exc) and attempt < s.max_retries:
                    time.sleep(s.retry_wait_s * 2**attempt)
                    continue
                raise EndpointError(describe_endpoint_error(exc, s, attempt + 1)) from exc
        raise AssertionError("unreachable")

    def _account(self, response: Any) -> float:
        usage = getattr(response, "usage", None)
        tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
        tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
        self.usage.calls += 1
        if usage is None:
            self.usage.notes.append(f"call {self.usage.calls}: the endpoint reported no token usage")
        self.usage.tokens_in += tokens_in
        self.usage.tokens_out += tokens_out
        cost = self._price(response, tokens_in, tokens_out)
        self.usage.money_usd += cost
        return cost

    def _price(self, response: Any, tokens_in: int, tokens_out: int) -> float:
        s = self.settings
        if s.price_source == "auto":
            try:
                return float(_litellm.completion_cost(completion_response=response, model=s.model))
            except Exception:  # litellm does not know this model: fall back to the table
                pass
        if s.price_in_per_mtok is None and s.price_out_per_mtok is None:
            if not any("no price" in n for n in self.usage.notes):
                self.usage.notes.append(f"no price known for {s.model}: USD counted as 0")
            return 0.0
        return (tokens_in * (s.price_in_per_mtok or 0.0) + tokens_out * (s.price_out_per_mtok or 0.0)) / 1e6


class EndpointModel(_Measured, LitellmTextbasedModel):
    """Text actions: each reply holds one bash block (any chat endpoint can do this)."""


class ToolEndpointModel(_Measured, LitellmModel):
    """Tool-call actions: the model calls a ``bash`` tool (mini-swe-agent 2's default; the endpoint must
    support tools: OpenAI, vLLM with ``--enable-auto-tool-choice``, llama.cpp with ``--jinja``)."""


def transient(exc: Exception) -> bool:
    """Worth another try after a short wait: no connection, a timeout, HTTP 429 or 5xx."""
    status = getattr(exc, "status_code", None) or 0
    return (
        isinstance(exc, openai.APIConnectionError | openai.RateLimitError) or status == 429 or status >= 500
    )


def describe_endpoint_error(exc: Exception, settings: EndpointSettings, attempts: int) -> str:
    where = settings.base_url or f"the {settings.model.split('/')[0]} API"
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    causes = _chain(exc)
    if any(isinstance(e, openai.APITimeoutError) or "Timeout" in type(e).__name__ for e in causes):
        return f"{where} did not answer within {settings.request_timeout_s:g} s{tries}"
    # litellm reports a refused connection as an InternalServerError caused by httpx's ConnectError
    if any(
        isinstance(e, openai.APIConnectionError | ConnectionError) or type(e).__name__ == "ConnectError"
        for e in causes
    ):
        return f"{where} is unreachable{tries}: {str(exc)[:200]}"
    status = getattr(exc, "status_code", None)
    if status in (401, 403):
        return f"{where} refused the API key (HTTP {status})"
    code = f"HTTP {status}" if status else type(exc).__name__
    return f"{where} answered {code}{tries}: {str(exc)[:200]}"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from, innermost last."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen
