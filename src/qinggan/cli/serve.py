"""``qinggan serve``: the HTTP service."""

from __future__ import annotations

from typing import Annotated

import typer

from .app import ModelOption, ThreadsOption, VariantOption, app


def _opt(flag: str, help_text: str, **kwargs: object) -> typer.models.OptionInfo:
    """A serve option; unset flags fall back to QINGGAN_* env vars, then defaults (settings.py)."""
    return typer.Option(flag, help=help_text, show_default=False, **kwargs)  # type: ignore[arg-type]


@app.command()
def serve(
    model: ModelOption = None,
    variant: VariantOption = None,
    host: Annotated[str | None, _opt("--host", "Address to bind [127.0.0.1].")] = None,
    port: Annotated[int | None, _opt("--port", "Port [7860].")] = None,
    threads: ThreadsOption = None,
    max_text_chars: Annotated[
        int | None, _opt("--max-text-chars", "Longest text in characters [512].")
    ] = None,
    max_body_bytes: Annotated[
        int | None, _opt("--max-body-bytes", "Largest request body [1048576].")
    ] = None,
    max_batch_texts: Annotated[
        int | None, _opt("--max-batch-texts", "Most texts per /v1/analyze request [64].")
    ] = None,
    max_batch_size: Annotated[
        int | None, _opt("--max-batch-size", "Most texts per model batch [32].")
    ] = None,
    max_batch_tokens: Annotated[
        int | None, _opt("--max-batch-tokens", "Most padded tokens per model batch [8192].")
    ] = None,
    max_wait_ms: Annotated[
        float | None, _opt("--max-wait-ms", "Longest wait to fill a batch, in ms [2].")
    ] = None,
    max_queue: Annotated[
        int | None, _opt("--max-queue", "Most queued texts before 503 [1024].")
    ] = None,
    request_timeout_s: Annotated[
        float | None, _opt("--request-timeout", "Seconds before a queued request gets 504 [30].")
    ] = None,
    read_timeout_s: Annotated[
        float | None,
        _opt("--read-timeout", "Seconds a client may stall mid-request before 408 [30]."),
    ] = None,
    api_key: Annotated[
        str | None,
        _opt("--api-key", "Require this key on the API (prefer the env var QINGGAN_API_KEY)."),
    ] = None,
    cors_origins: Annotated[
        str | None, _opt("--cors-origins", "Comma-separated origins allowed by CORS [none].")
    ] = None,
    log_level: Annotated[str | None, _opt("--log-level", "critical … debug [info].")] = None,
    access_log: Annotated[
        bool | None, _opt("--access-log/--no-access-log", "Log every request [off].")
    ] = None,
    ort_spinning: Annotated[
        bool | None,
        _opt(
            "--ort-spinning/--no-ort-spinning",
            "Let idle ONNX Runtime threads busy-wait: faster for one client, slower under "
            "load on small CPUs [off].",
        ),
    ] = None,
    feedback_db: Annotated[
        str | None,
        _opt(
            "--feedback-db",
            "Store corrections (POST /v1/feedback) in this SQLite file or postgresql:// URL [off].",
        ),
    ] = None,
) -> None:
    """Run the HTTP service: web page at /, API at /analyze and /v1/analyze, docs at /docs.

    Every option is also an env var QINGGAN_<OPTION> (e.g. QINGGAN_MAX_QUEUE); flags win.
    """
    from ..settings import Settings

    settings = Settings.resolve(
        {
            "model": model,
            "variant": variant,
            "host": host,
            "port": port,
            "threads": threads,
            "max_text_chars": max_text_chars,
            "max_body_bytes": max_body_bytes,
            "max_batch_texts": max_batch_texts,
            "max_batch_size": max_batch_size,
            "max_batch_tokens": max_batch_tokens,
            "max_wait_ms": max_wait_ms,
            "max_queue": max_queue,
            "request_timeout_s": request_timeout_s,
            "read_timeout_s": read_timeout_s,
            "api_key": api_key,
            "cors_origins": cors_origins,
            "log_level": log_level,
            "access_log": access_log,
            "ort_spinning": ort_spinning,
            "feedback_db": feedback_db,
        }  # fmt: skip
    )
    # The model loads (ONNX Runtime releases the GIL) while the web stack imports.
    from concurrent.futures import ThreadPoolExecutor

    from .. import engine  # noqa: F401  (imported here, not inside the thread)

    with ThreadPoolExecutor(max_workers=1) as pool:
        loading = pool.submit(settings.load_model)
        from ..server import run

        classifier = loading.result()
    run(settings, classifier)
