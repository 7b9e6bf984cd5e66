"""Chat LLM on Hugging Face transformers (``AutoModelForCausalLM`` + ``AutoTokenizer``)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from models.base import GenerationChunk, GenerationParams, InvalidInput
from models.sources import resolve_source

logger = logging.getLogger(__name__)


class TransformersChat:
    """A causal LM served with its own cancellable decode loop.

    Loads from a hub id, a local directory, or a GGUF file (``source`` pointing at a ``.gguf``
    file, or a directory plus ``gguf_file``; transformers de-quantises GGUF weights, which needs the
    ``gguf`` package). The prompt is built with the tokenizer's own chat template, including
    ``tools`` when the template supports them.

    Decoding is a plain loop over ``model(...)`` with a KV cache rather than ``model.generate``
    so that each request gets its own ``torch.Generator`` (``seed`` is reproducible even when
    requests run concurrently), stop strings are cut exactly, and a ``cancel`` event ends the
    work after the current token.

    Concurrency: each request runs this loop in its own worker thread and torch releases the GIL
    inside its kernels, so concurrent requests proceed in parallel instead of queueing behind one
    another. They are not batched into one forward pass: transformers' continuous batching
    (``init_continuous_batching``) relies on paged attention, which on CPU measured ~150x slower
    than this loop on this project's 2-core machines (90 s versus 0.5 s for an 8-token reply from
    SmolLM2-135M), and a padded static batch would make short replies wait for long ones. On a
    GPU, scale with replicas (``autoscaling_config``) or place a batching engine behind the same
    :class:`models.base.ChatBackend` protocol.

    Args:
        source: hub id, local directory, ``.gguf`` file, or ``package://`` source.
        gguf_file: GGUF file name inside ``source`` (a directory or hub repo).
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: ``"auto"`` (bfloat16 on CUDA, float32 on CPU) or a torch dtype name.
        max_context_tokens: prompt + completion budget; defaults to the model's
            ``max_position_embeddings``.
        system_prompt: prepended as a system message when the request has none.
        torch_threads: intra-op threads for this process (``None`` keeps torch's default).

    Raises:
        OSError / ValueError from transformers when the weights cannot be loaded.
    """

    def __init__(
        self,
        source: str,
        gguf_file: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        max_context_tokens: int | None = None,
        system_prompt: str | None = None,
        torch_threads: int | None = None,
        trust_remote_code: bool = False,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        path = resolve_source(source)
        if gguf_file is None and path.endswith(".gguf") and Path(path).is_file():
            path, gguf_file = str(Path(path).parent), Path(path).name
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        kwargs = {"gguf_file": gguf_file} if gguf_file else {}
        t0 = time.monotonic()
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)
        self.model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype, trust_remote_code=trust_remote_code, **kwargs
        ).to(device)
        self.model.eval()
        logger.info(
            "loaded %s%s on %s in %.1f s", path, f" ({gguf_file})" if gguf_file else "", device, time.monotonic() - t0
        )
        self.device = device
        self.system_prompt = system_prompt
        self.max_context_tokens = int(
            max_context_tokens or getattr(self.model.config, "max_position_embeddings", 0) or 2048
        )
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_token_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        self._torch = torch

    # ------------------------------------------------------------------------------------------
    def prompt_ids(self, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
        """Token ids of the chat-templated prompt, ending with the assistant generation prompt.

        Raises:
            InvalidInput: the messages cannot be rendered by the model's chat template.
        """
        if self.system_prompt and not any(m.get("role") == "system" for m in messages):
            messages = [{"role": "system", "content": self.system_prompt}, *messages]
        try:
            text = self.tokenizer.apply_chat_template(
                messages, tools=tools or None, add_generation_prompt=True, tokenize=False
            )
        except Exception as exc:  # jinja errors: roles out of order, unsupported fields...
            raise InvalidInput(
                f"messages cannot be rendered by the model's chat template: {exc}", param="messages"
            ) from exc
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(
        self,
        messages: list[dict],
        params: GenerationParams,
        tools: list[dict] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[GenerationChunk]:
        """Stream a reply; see :class:`models.base.ChatBackend`.

        Raises:
            InvalidInput: the prompt does not fit the context window (``param`` ``messages``), or
                the completion bound the caller asked for does not fit beside it (``param``
                :attr:`GenerationParams.max_tokens_param`).
        """
        torch = self._torch
        ids = self.prompt_ids(messages, tools)
        budget = self.max_context_tokens - len(ids)
        if budget <= 0:
            raise InvalidInput(
                f"the prompt has {len(ids)} tokens; this model's context is {self.max_context_tokens}",
                param="messages",
            )
        if params.max_tokens_param and params.max_tokens > budget:
            raise InvalidInput(
                f"{params.max_tokens_param} is {params.max_tokens}, but this model's context window is "
                f"{self.max_context_tokens} tokens and the messages take {len(ids)}: at most {budget} "
                "completion tokens fit",
                param=params.max_tokens_param,
            )
        max_new = max(1, min(int(params.max_tokens), budget))
        temperature, top_p = self.sampling(params)
        generator = torch.Generator(device=self.device)
        if params.seed is not None:
            generator.manual_seed(int(params.seed))
        else:
            generator.seed()
        text_so_far = ""  # decoded text of all generated tokens
        emitted = 0  # characters of text_so_far already yielded
        stops = [s for s in params.stop if s]
        hold = max((len(s) for s in stops), default=1) - 1
        generated: list[int] = []
        finish = "length"
        with torch.inference_mode():
            input_ids = torch.tensor([ids], device=self.device)
            out = self.model(input_ids=input_ids, use_cache=True)
            cache = out.past_key_values
            logits = out.logits[:, -1, :]
            while len(generated) < max_new:
                if cancel is not None and cancel.is_set():
                    finish = "stop"
                    break
                token = self._sample(logits, temperature, top_p, generator)
                if token in self.eos_token_ids:
                    finish = "stop"
                    break
                generated.append(token)
                text_so_far = self.tokenizer.decode(generated, skip_special_tokens=True)
                cut = _find_stop(text_so_far, stops, emitted)
                if cut is not None:
                    text_so_far = text_so_far[:cut]
                    finish = "stop"
                    break
                # hold back a possible stop-string prefix and an incomplete UTF-8 sequence
                safe = len(text_so_far) - hold if stops else len(text_so_far)
                if text_so_far.endswith("\ufffd"):
                    safe = min(safe, len(text_so_far) - 1)
                if safe > emitted:
                    yield GenerationChunk(text=text_so_far[emitted:safe])
                    emitted = safe
                out = self.model(
                    input_ids=torch.tensor([[token]], device=self.device), past_key_values=cache, use_cache=True
                )
                cache = out.past_key_values
                logits = out.logits[:, -1, :]
        tail = text_so_far[emitted:].rstrip("\ufffd")
        yield GenerationChunk(text=tail, finish_reason=finish, prompt_tokens=len(ids), completion_tokens=len(generated))

    def sampling(self, params: GenerationParams) -> tuple[float, float]:
        """``(temperature, top_p)`` of a request: its own, or for what it left unset (``None``)
        the checkpoint's ``generation_config`` (a model that does not sample, ``do_sample``
        false, decodes greedily: temperature 0)."""
        gc = self.model.generation_config
        temperature = params.temperature
        if temperature is None:
            temperature = float(gc.temperature or 1.0) if gc.do_sample else 0.0
        top_p = params.top_p if params.top_p is not None else float(gc.top_p or 1.0)
        return temperature, top_p

    def _sample(self, logits, temperature: float, top_p: float, generator) -> int:
        torch = self._torch
        logits = logits[0].float()
        if temperature <= 0:
            return int(torch.argmax(logits))
        logits = logits / float(temperature)
        probs = torch.softmax(logits, dim=-1)
        if top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < float(top_p)
            keep[0] = True
            filtered = torch.zeros_like(probs)
            filtered[order[keep]] = sorted_probs[keep]
            probs = filtered / filtered.sum()
        return int(torch.multinomial(probs, 1, generator=generator))

    def count_tokens(self, text: str) -> int:
        """Number of tokens ``text`` encodes to (no special tokens)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def _find_stop(text: str, stops: list[str], emitted: int) -> int | None:
    """Index where the earliest stop string starts in ``text``, searching only where a new match
    can begin (from ``emitted`` minus the longest stop), or ``None``."""
    best = None
    for s in stops:
        i = text.find(s, max(0, emitted - len(s)))
        if i != -1 and (best is None or i < best):
            best = i
    return best
