"""The realtime voice session engine behind ``/v1/realtime`` (OpenAI Realtime protocol with the
Naia extensions: server VAD, streamed audio in and out, barge-in, emotion tags, tool calls).

- :mod:`.session`: one session: settings, event dispatch, emit; it alone wires the parts below;
- :mod:`.input_audio_buffer`: appended audio, the VAD stream and turn detection;
- :mod:`.turns`: server VAD turn detection on speech probabilities;
- :mod:`.text`: sentence splitting and emotion-tag scanning of streamed LLM text;
- :mod:`.cascade`: the role calls a session makes (LLM, STT, TTS, VAD), over the role interface;
- :mod:`.registry`: the sessions of one ingress replica, as admission sees them;
- :mod:`.fetch`: ``ref_audio_url`` downloads with SSRF protection.

Event names and constructors (beta/Naia by default, OpenAI GA on request, the one ``error``
constructor) live in :mod:`deployments.protocol.realtime`, shared with admission.
"""
