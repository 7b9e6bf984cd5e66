"""Wire types: the request and response bodies and events of every endpoint family, as pydantic
models named after the schema names in OpenAI's OpenAPI description (``CreateChatCompletionRequest``,
``RealtimeClientEventResponseCreate``...), one module per family, as vLLM's ``protocol.py`` does:

- :mod:`.chat`: ``/v1/chat/completions`` (request, response, stream chunk);
- :mod:`.embeddings`: ``/v1/embeddings``;
- :mod:`.audio`: ``/v1/audio/transcriptions`` / ``translations`` / ``speech``;
- :mod:`.models`: ``/v1/models``;
- :mod:`.errors`: the error envelope every route answers with;
- :mod:`.realtime`: the ``/v1/realtime`` events (names, GA/beta renaming, typed client events,
  the one ``error`` event constructor).

Routes import them and the OpenAPI document is generated from them. Requests allow unknown fields
(OpenAI clients send fields this server ignores, e.g. ``user``, ``metadata``) but validate the
fields acted on, so a bad value is a 400 naming its ``param``. This package imports nothing else
of ``deployments``.
"""
