"""Batch scoring of files: CSV, TSV, JSON Lines, Parquet and plain text, streamed and resumable.

Reading is streamed in chunks of ``chunk_size`` rows (pyarrow's streaming CSV reader,
``ParquetFile.iter_batches``, line iteration for JSON Lines and text), so memory stays
flat whatever the file size. Every output row is its input row plus ``label``,
``label_zh``, ``confidence``, one ``score_<label>`` per label, ``truncated`` and
``error``; a row whose text is empty, missing or not a string gets an ``error`` value and
empty predictions instead of stopping the run. The output format follows the output
file's extension; ``-`` means stdin/stdout (JSON Lines; stdin may also be plain text).

Resuming. Output goes to ``OUT.partial`` (text formats, appended chunk by chunk) or to
one file per chunk in ``OUT.parts/`` (Parquet, which cannot be appended to), next to a
checkpoint ``OUT.checkpoint.json`` holding the rows done, the byte length / part count
that matches them and a fingerprint of the input (size + sha256) and of every option
that changes the output. The data is fsynced before the checkpoint is replaced
atomically, so a killed run leaves at worst some extra bytes or parts beyond the
checkpoint, which a restart discards. Restarting the same command continues after the
last checkpoint (``--resume`` insists on one, ``--no-resume`` starts over); a changed
input or option is refused. When the input ends, the checkpoint is marked finished, the
partial file (or the Parquet parts joined into one file) is renamed onto ``OUT`` and the
checkpoint removed, so a file at ``OUT`` is always complete; a run killed between the
rename and the removal is recognised as complete when restarted.

Modules: ``formats`` (which format a path holds), ``readers`` (streaming sources),
``predictions`` (scoring a chunk's texts), ``writers`` (output sinks), ``checkpoints``
(resume state and the checkpointer), ``plan`` (the options, and what a run reads and
where it resumes) and ``run`` (:func:`score_file`, which ties them together).
"""

from __future__ import annotations

from .checkpoints import ResumeError, checkpoint_path, partial_path, parts_path
from .formats import FORMATS, FileFormatError, detect_format, output_format
from .predictions import LocalScorer, model_identity, prediction_schema, score_texts
from .run import ScoreOptions, Summary, score_file

__all__ = [
    "FORMATS",
    "FileFormatError",
    "LocalScorer",
    "ResumeError",
    "ScoreOptions",
    "Summary",
    "checkpoint_path",
    "detect_format",
    "model_identity",
    "output_format",
    "partial_path",
    "parts_path",
    "prediction_schema",
    "score_file",
    "score_texts",
]
