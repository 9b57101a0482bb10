"""Pydantic models for the OpenAPI schema (``/docs``) only.

Requests are read and checked by :mod:`.requests` (exact status codes, no pydantic round
trip); these models describe the same shapes to clients. Error responses are documented
from the error table, so a new error kind shows up in ``/docs`` by itself.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..errors import (
    BODY_TOO_LARGE,
    INTERNAL_ERROR,
    INVALID_JSON,
    INVALID_REQUEST,
    INVALID_TEXT,
    OVERLOADED,
    TEXT_TOO_LONG,
    TIMEOUT,
    TOO_MANY_TEXTS,
    UNAUTHORIZED,
    UNAVAILABLE,
    UNSUPPORTED_MEDIA_TYPE,
    ErrorKind,
)


class AnalyzeRequest(BaseModel):
    text: str = Field(description="One review; at most max_text_chars characters.")


class BatchRequest(BaseModel):
    texts: list[str] = Field(description="Reviews, at most max_batch_texts of them.")


class AnalyzeResult(BaseModel):
    label: str = Field(examples=["Positive"])
    confidence: float = Field(examples=[0.9931])
    text: str
    label_zh: str = Field(examples=["正面"])
    scores: dict[str, float]
    truncated: bool = Field(description="True if the text was cut to the model's token limit.")
    windows: int | None = Field(
        None,
        description="Present when a text over the model's token limit was read whole: "
        "the number of windows it was scored in (long_texts=window).",
    )


class BatchResult(BaseModel):
    results: list[AnalyzeResult]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON body of ``model`` (the route reads it itself)."""
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }


def error_responses(*kinds: ErrorKind) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route that may answer with these kinds of error: one
    entry per status, listing its codes and when each happens (from the error table)."""
    docs: dict[int | str, dict[str, Any]] = {}
    for status in sorted({kind.status for kind in kinds}):
        same = [kind for kind in kinds if kind.status == status]
        description = "; ".join(f"{kind.code}: {kind.when}" for kind in same)
        docs[status] = {"model": ErrorBody, "description": description}
    return docs


# The errors every text-classifying route may answer with.
ANALYZE_ERRORS = (
    INVALID_TEXT,
    UNAUTHORIZED,
    BODY_TOO_LARGE,
    TEXT_TOO_LONG,
    UNSUPPORTED_MEDIA_TYPE,
    INVALID_REQUEST,
    INVALID_JSON,
    TOO_MANY_TEXTS,
    INTERNAL_ERROR,
    UNAVAILABLE,
    OVERLOADED,
    TIMEOUT,
)
