"""Explanations for the HTTP service: off the event loop, one text at a time.

Explaining runs in its own worker thread, outside the batcher: each text's rows are a
batch of their own (so its explanation does not depend on the request's other texts, nor
on other clients' texts the batcher coalesced it with), and a slow explanation never
holds up plain requests queued in the batcher.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import BaseModel, Field

from . import explain

_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qinggan-explain")


async def explain_async(model: Any, texts: Sequence[str], predictions: Sequence[Any]) -> list[Any]:
    """``predictions`` with explanations attached, computed in the explain thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_POOL, explain, model, list(texts), list(predictions))


# -- documentation models (OpenAPI only) ----------------------------------------------------


class SpanDoc(BaseModel):
    start: int = Field(description="First code point of the span (Python str index).")
    end: int = Field(description="One past its last code point: text[start:end] == span text.")
    text: str = Field(examples=["隔音太差"])
    score: float = Field(
        ge=-1, le=1, examples=[-0.97], description="> 0 supports Positive, < 0 Negative."
    )
    level: Literal["clause", "phrase"]


class ExplanationDoc(BaseModel):
    method: str = Field(
        examples=["weighted(clause-alone*0.40+ngram-exact*0.60)"],
        description="How the scores were computed (docs/explain.md).",
    )
    mixed: bool = Field(description="Clauses of both polarities, each with strong support.")
    spans: list[SpanDoc] = Field(description="Every clause in text order, then the phrases.")


EXPLAIN_FIELD_HELP = "Add an `explanation` to each result: the clauses and phrases behind it."
