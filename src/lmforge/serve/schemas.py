"""Request bodies, validated by pydantic: wrong types or shapes become 422 before any model runs.

Limits that depend on the server's options (number of inputs, max_tokens) are checked in the
routes, so their messages can name the option.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Stop = str | list[str] | None


class _Request(BaseModel):
    # OpenAI clients send fields we do not use (user, seed, ...): ignore them rather than fail.
    model_config = ConfigDict(extra="ignore")


class _OwnRequest(BaseModel):
    # lmforge's own routes have no foreign clients: an unknown field is a typo ("mehtod"), refused rather
    # than answered as if it had not been sent.
    model_config = ConfigDict(extra="forbid")


class ClassifyRequest(_OwnRequest):
    input: str | list[str] = Field(description="one text or a list of texts to label (or, for /v1/ner, to tag)")
    model: str | None = None


class ExplainRequest(_OwnRequest):
    input: str | list[str] = Field(description="one text or a list of texts to explain")
    model: str | None = None
    # No "auto" here: it runs every method on the texts, too costly for a bounded request.
    method: Literal["ig", "gradxinput", "occlusion", "shap"] = "occlusion"


class Message(_Request):
    role: Literal["system", "user", "assistant"]
    content: str


class StreamOptions(_Request):
    include_usage: bool = False


class Sampling(_Request):
    model: str
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: Stop = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Literal[1] = 1

    def stops(self) -> list[str] | None:
        return [self.stop] if isinstance(self.stop, str) else self.stop

    def token_budget(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(Sampling):
    prompt: str | list[str]


class EmbeddingRequest(_Request):
    input: str | list[str] = Field(description="one text or a list of texts to embed (token arrays are not accepted)")
    model: str
    encoding_format: Literal["float", "base64"] = "float"  # the official client asks for base64
    dimensions: int | None = Field(None, ge=1)
