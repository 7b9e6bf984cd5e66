"""OpenTelemetry traces across the deployments, configured only by the standard ``OTEL_*`` variables.

One trace per REST request (a SERVER span at the ingress, continuing the client's W3C
``traceparent`` / ``tracestate``) and one per realtime turn (a root ``realtime.turn`` span), with
a CLIENT span per deployment call made for it (:func:`deployments.tracing.calls.start_call`, in
:class:`deployments.state.IngressState`) and, inside the model replica, that call's own SERVER span
(:func:`deployments.tracing.replica.traced`), child of the client span, in the same trace.
Attributes follow OpenTelemetry's GenAI conventions where they exist (``gen_ai.operation.name``,
``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.request.max_tokens`` /
``temperature`` / ``top_p`` / ``seed`` / ``stop_sequences``, ``gen_ai.usage.input_tokens`` /
``output_tokens``, ``gen_ai.response.finish_reasons``, ``gen_ai.embeddings.dimension.count``,
``gen_ai.conversation.id``), the RPC ones for the handle call (``rpc.system`` ``ray_serve``,
``rpc.service`` the deployment, ``rpc.method``) and the HTTP server ones for the ingress span
(``http.request.method``, ``http.route``, ``http.response.status_code``, ``url.path``,
``url.scheme``). Operations the GenAI conventions do not name are named here:
``transcription`` (STT), ``speech`` (TTS, with ``gen_ai.output.type`` ``speech``),
``voice_activity`` and ``end_of_turn`` (VAD). No prompt, transcript or message content is
recorded.

One module a concern; this package imports none of them, so import the one you use:

* :mod:`~deployments.tracing.provider`: on or off from the ``OTEL_*`` variables, this process's
  TracerProvider (``setup``, ``active``) and the forwarding of the variables to the replicas
  (``with_otel_env``);
* :mod:`~deployments.tracing.operations`: the GenAI attributes of each traced deployment method
  (``OPERATIONS``) and how a span ends;
* :mod:`~deployments.tracing.calls`: the ingress's CLIENT span of a deployment call and the W3C
  context it carries as a reserved keyword of the handle call (and why not Ray Serve's tracing);
* :mod:`~deployments.tracing.replica`: the model replica's SERVER span of that call (``traced``);
* :mod:`~deployments.tracing.scopes`: the span a request or realtime turn runs in (``Scope``,
  ``within``, ``fallback``) and the realtime turn's root span (``start_turn``);
* :mod:`~deployments.tracing.asgi`: the ingress's SERVER spans of HTTP requests and realtime
  connects (and why FastAPI's own telemetry is off).

This package imports nothing else of :mod:`deployments` (a leaf), so every layer may use it.
"""
