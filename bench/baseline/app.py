"""The original service, reproduced for the side-by-side benchmark (issue 7).

As in the StructBERT CPU guide: a Flask app, the model held in a global singleton
(a transformers ``text-classification`` pipeline, created lazily on first use), one
``POST /analyze`` route, served by ``gunicorn -w 3 --timeout 30 app:app``. Nothing here
is tuned: torch keeps its default thread count in every worker, as the original did.

The model directory comes from ``$BASELINE_MODEL`` (a Hugging Face layout checkpoint).
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request
from transformers import pipeline

MAX_CHARS = 512

app = Flask(__name__)
_sentiment_pipeline = None


def get_sentiment_pipeline():
    """The global singleton from the guide: load the pipeline once per worker process."""
    global _sentiment_pipeline
    if _sentiment_pipeline is None:
        _sentiment_pipeline = pipeline(
            "text-classification", model=os.environ["BASELINE_MODEL"], device="cpu"
        )
    return _sentiment_pipeline


@app.get("/")
def index():
    return "StructBERT 中文情感分析 (baseline)"


@app.post("/analyze")
def analyze():
    data = request.get_json(silent=True) or {}
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        return jsonify({"error": "缺少text字段"}), 400
    if len(text) > MAX_CHARS:
        return jsonify({"error": "文本过长"}), 413
    try:
        result = get_sentiment_pipeline()(text, truncation=True, max_length=512)[0]
    except Exception as exc:  # the original answers 500 with the message
        return jsonify({"error": str(exc)}), 500
    return jsonify(
        {"label": result["label"], "confidence": round(result["score"], 4), "text": text}
    )


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=7860, debug=False)
