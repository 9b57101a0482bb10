"""Pydantic models for the OpenAPI schema (``/docs``) only.

Requests are read and checked by :mod:`.requests` (exact status codes, no pydantic round
trip); these models describe the same shapes to clients. Error responses are documented
from the error table, so a new error kind shows up in ``/docs`` by itself.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..errors import ERROR_TABLE


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


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these statuses: each lists its codes from the table."""
    docs: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        kinds = [kind for kind in ERROR_TABLE if kind.status == status]
        description = "; ".join(f"{kind.code}: {kind.when}" for kind in kinds)
        docs[status] = {"model": ErrorBody, "description": description}
    return docs


# The errors every text-classifying route may answer with.
ANALYZE_ERRORS = (400, 401, 413, 415, 422, 500, 503, 504)
