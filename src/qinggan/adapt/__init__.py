"""``qinggan adapt``: a model for the user's own domain from their labelled texts.

``data`` reads and checks the rows (and takes ``(text, label)`` pairs from any other source
through ``from_pairs``); ``features`` exposes the encoder's pooled features from its ONNX
graph; ``ngram`` and ``methods`` fit the new members and the candidate blends; ``select``
chooses one; ``report`` compares before and after; ``write`` writes the bundle atomically;
``run`` does it all inside a time budget (``budget``). Adapting needs scikit-learn and onnx
(the ``adapt`` extra), never torch; serving an adapted bundle needs neither.
"""
