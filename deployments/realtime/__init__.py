"""The realtime voice session engine behind ``/v1/realtime`` (OpenAI Realtime protocol with the
Naia extensions: server VAD, streamed audio in and out, barge-in, emotion tags, tool calls).

- :mod:`.events`: event names (beta/Naia by default, OpenAI GA on request) and constructors;
- :mod:`.text`: sentence splitting and emotion-tag scanning of streamed LLM text;
- :mod:`.turns`: server VAD turn detection on speech probabilities;
- :mod:`.session`: one session: input buffer, conversation, responses, cancellation;
- :mod:`.cascade`: the role calls a session makes (LLM, STT, TTS, VAD), over deployment handles.
"""
