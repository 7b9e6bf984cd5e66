"""Model backends, free of Ray: one package per role (``llm``, ``embeddings``, ``stt``, ``tts``,
``vad``), one module per backend inside it, behind the protocols in :mod:`models.base`.

Backends are created by name through :func:`models.registry.create_backend`, which imports the
backend's module only when it is used, so heavy libraries (torch, NeMo, f5-tts) load only in the
process that serves that model.
"""
