"""``openai`` backend: any OpenAI-compatible chat-completions server (vLLM, SGLang, TGI, OpenAI).

Prompts are sent as :meth:`Prompt.messages` with every image as a base64 data URL
(PNG, lossless, so the server decodes the pixels the ``hf`` backend sees); the
server applies the model's chat template. Requests run on a bounded thread pool
(``concurrency``), each with a timeout; failed requests are retried with
exponential backoff:

* connection refused / reset (the server is down or restarting): retried for up to
  ``max_wait`` seconds, then the batch fails with :class:`ServerUnavailable`; later
  batches fail fast (one connection attempt) until the server answers again;
* 5xx, 429, 408 and request timeouts: retried ``retries`` times;
* any other 4xx (the server refused this request: too long, bad image, ...): not
  retried, :class:`RequestRefused` with the server's message.

An error fails the whole batch; the evaluator then retries prompt by prompt (the
completions of the batch that succeeded are kept here and not requested again), so
a refused request is one failed record with the server's reason.

A server does not say which family its model belongs to, so the box conventions come
from ``--model`` when it is a local model directory (its ``config.json`` and processor
config, as in ``hf``), else from ``family=`` / ``box_space=`` in ``--model_args``.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import logging
import os
import random
import socket
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, SamplingParams
from harness.conventions import BOX_SPACES, FAMILIES, ModelConventions, conventions_for
from harness.errors import HarnessError, UsageError
from harness.prompt import Prompt
from harness.validation import check_number

log = logging.getLogger("harness.backends.openai")

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class RequestRefused(HarnessError):
    """The server answered 4xx: this request will not succeed if repeated."""


class RequestFailed(HarnessError):
    """The server kept failing (5xx, timeouts) after every retry."""


class ServerUnavailable(HarnessError):
    """No connection to the server for ``max_wait`` seconds."""


class _Transient(Exception):
    def __init__(self, message: str, down: bool) -> None:
        super().__init__(message)
        self.down = down  # connection-level (the server is gone) rather than a failed request


def prompt_seeds(prompts: list[Prompt], seed: int) -> list[int]:
    """One sampling seed per prompt, from the batch seed and the prompt's content (plus its
    occurrence among identical prompts): the same prompt gets the same seed whether it is
    sent in its batch or alone (the evaluator's per-prompt retry), so a resumed or retried
    run samples exactly what an uninterrupted one does."""
    seen: dict[str, int] = {}
    out = []
    for p in prompts:
        key = json.dumps([p.text, p.system, [[im.uri, list(im.size)] for im in p.images]])
        k = seen.get(key, 0)
        seen[key] = k + 1
        digest = hashlib.sha256(f"{seed}\0{k}\0{key}".encode()).digest()
        out.append(int.from_bytes(digest[:4], "little") & 0x7FFFFFFF)
    return out


def local_model_conventions(directory: Path) -> ModelConventions | None:
    """A local model directory's conventions without loading transformers: its family
    (``config.json`` model_type) and the image sizing of its processor config."""
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return None
    conv = conventions_for(config.get("model_type") if isinstance(config, dict) else None)
    ip: dict[str, Any] = {}
    for name in ("processor_config.json", "preprocessor_config.json"):
        try:
            data = json.loads((directory / name).read_text())
        except (OSError, ValueError):
            continue
        ip = data.get("image_processor", data) if isinstance(data, dict) else {}
        break
    found: dict[str, Any] = {}
    size = ip.get("size") if isinstance(ip.get("size"), dict) else {}
    lo = ip.get("min_pixels") or size.get("min_pixels") or size.get("shortest_edge")
    hi = ip.get("max_pixels") or size.get("max_pixels") or size.get("longest_edge")
    if lo:
        found["min_pixels"] = int(lo)
    if hi:
        found["max_pixels"] = int(hi)
    if ip.get("patch_size") and ip.get("merge_size"):
        found["resize_factor"] = int(ip["patch_size"]) * int(ip["merge_size"])
    return conv.with_overrides(**found)


def image_data_url(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def openai_messages(prompt: Prompt) -> list[dict[str, Any]]:
    """:meth:`Prompt.messages` in the OpenAI format: each ``{"type": "image"}`` part
    becomes an ``image_url`` part holding the image as a data URL, in the same place."""
    images = iter(prompt.images)
    out = []
    for msg in prompt.messages():
        parts = []
        for part in msg["content"]:
            if part["type"] == "image":
                parts.append({"type": "image_url", "image_url": {"url": image_data_url(next(images).load())}})
            else:
                parts.append({"type": "text", "text": part["text"]})
        out.append({"role": msg["role"], "content": parts})
    return out


class OpenAIBackend(Backend):
    """Chat completions from an OpenAI-compatible server at ``base_url`` (e.g.
    ``http://127.0.0.1:8000/v1``). ``model`` is the served model name, or a local model
    directory (then the name the server serves, when it serves exactly one, and the
    directory's conventions and weight fingerprint are used). See the module docstring."""

    name = "openai"
    ARGS = ("model", "base_url", "served_name", "api_key_env", "concurrency", "timeout", "retries", "backoff",
            "max_wait", "startup_wait", "native_n", "send_seed", "family", "box_space", "min_pixels", "max_pixels")

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        base_url: str | None = None,
        served_name: str | None = None,
        api_key_env: str | None = None,
        concurrency: int | str = 8,
        timeout: float | str = 120.0,
        retries: int | str = 4,
        backoff: float | str = 1.0,
        max_wait: float | str = 300.0,
        startup_wait: float | str = 0.0,
        native_n: bool = True,
        send_seed: bool = True,
        family: str | None = None,
        box_space: str | None = None,
        min_pixels: int | str | None = None,
        max_pixels: int | str | None = None,
        **unknown: Any,
    ) -> None:
        self.check_args(model, base_url=base_url, served_name=served_name, api_key_env=api_key_env,
                        concurrency=concurrency, timeout=timeout, retries=retries, backoff=backoff, max_wait=max_wait,
                        startup_wait=startup_wait, native_n=native_n, send_seed=send_seed, family=family,
                        box_space=box_space, min_pixels=min_pixels, max_pixels=max_pixels, **unknown)
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        url = urllib.parse.urlsplit(str(base_url).rstrip("/"))
        self.base_url = urllib.parse.urlunsplit(url)
        self._scheme, self._host, self._port = url.scheme, url.hostname, url.port
        self._prefix = url.path
        self.concurrency = int(concurrency)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_wait = float(max_wait)
        self.native_n = _flag(native_n)
        self.send_seed = _flag(send_seed)
        key_env = api_key_env or "OPENAI_API_KEY"
        key = os.environ.get(key_env)
        if api_key_env and not key:
            raise UsageError(f"api_key_env={api_key_env}: that environment variable is not set")
        self._headers = {"Content-Type": "application/json"}
        if key:  # never recorded: only the variable's name is in the run config
            self._headers["Authorization"] = f"Bearer {key}"
        self._local = threading.local()
        self._conns: set[http.client.HTTPConnection] = set()
        self._closed = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai")
        self._down_since: float | None = None
        self._warned = False
        self._lock = threading.Lock()
        self._kept: dict[tuple, list[str]] = {}
        self.stats = {"requests": 0, "retries": 0, "completion_tokens": 0, "prompt_tokens": 0}

        self.model_arg = str(model)
        local = Path(str(model)).expanduser()
        self.local_dir = local if (local / "config.json").is_file() else None
        self.served = self._served_models(float(startup_wait))
        self.served_name = self._pick_name(served_name)

        conv = (local_model_conventions(self.local_dir) if self.local_dir else None) or ModelConventions()
        if family:
            conv = FAMILIES.get(family, ModelConventions(family=family)).with_overrides(
                min_pixels=conv.min_pixels, max_pixels=conv.max_pixels, resize_factor=conv.resize_factor)
        user = {k: v for k, v in (("box_space", box_space), ("min_pixels", min_pixels), ("max_pixels", max_pixels))
                if v not in (None, "")}
        self._conventions = conv.with_overrides(**user) if user else conv
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ checks
    @classmethod
    def check_args(cls, model: str | os.PathLike | None, **args: Any) -> None:
        unknown = sorted(set(args) - set(cls.ARGS))
        if unknown:
            raise UsageError(f"unknown --model_args for backend 'openai': {', '.join(unknown)}. Valid: "
                             f"{', '.join(a for a in cls.ARGS if a != 'model')}")
        if model in (None, ""):
            raise UsageError("backend 'openai' needs --model (the served model name, or a local model directory)")
        base_url = args.get("base_url") or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise UsageError("backend 'openai' needs base_url=http://HOST:PORT/v1 in --model_args "
                             "(or $OPENAI_BASE_URL)")
        url = urllib.parse.urlsplit(str(base_url))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise UsageError(f"base_url {base_url!r} is not an http(s) URL such as http://127.0.0.1:8000/v1")
        try:
            url.port  # noqa: B018 (raises on a bad port)
        except ValueError:
            raise UsageError(f"base_url {base_url!r} has a bad port") from None
        for key, minimum, integer in (("concurrency", 1, True), ("retries", 0, True), ("timeout", 0.001, False),
                                      ("backoff", 0, False), ("max_wait", 0, False), ("startup_wait", 0, False),
                                      ("min_pixels", 1, True), ("max_pixels", 1, True)):
            value = args.get(key)
            if value in (None, ""):
                continue
            try:
                value = (int if integer else float)(str(value).strip())
            except ValueError:
                kind = "an integer" if integer else "a number"
                raise UsageError(f"model_args {key} must be {kind}, got {args[key]!r}") from None
            check_number(f"model_args {key}", value, minimum=minimum, integer=integer)
        for key in ("native_n", "send_seed"):
            if args.get(key) is not None and not isinstance(args[key], bool) and \
                    str(args[key]).lower() not in ("true", "false", "1", "0"):
                raise UsageError(f"model_args {key} must be true or false, got {args[key]!r}")
        box_space = args.get("box_space")
        if box_space not in (None, "") and box_space not in BOX_SPACES:
            raise UsageError(f"unknown box_space {box_space!r}; choose one of {', '.join(BOX_SPACES)}")
        family = args.get("family")
        if family not in (None, "") and family not in FAMILIES and family != "generic":
            raise UsageError(f"unknown family {family!r}; choose one of {', '.join([*FAMILIES, 'generic'])} "
                             "(or give box_space= directly)")

    # -------------------------------------------------------------------- HTTP
    def _connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
                with self._lock:
                    self._conns.discard(conn)
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
            with self._lock:
                self._conns.add(conn)
        return conn

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One HTTP exchange. Raises _Transient (retry), RequestRefused (4xx) or returns JSON."""
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(2):  # a kept-alive connection the server has closed: reconnect once
            conn = self._connection(fresh=attempt > 0)
            try:
                conn.request(method, self._prefix + path, body=data, headers=self._headers)
                reply = conn.getresponse()
                payload = reply.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                conn.close()
                if attempt == 0 and getattr(self._local, "used", False):
                    continue
                raise _Transient(f"connection lost: {type(exc).__name__}", down=True) from None
            except TimeoutError:
                conn.close()
                raise _Transient(f"no reply within timeout={self.timeout:g} s", down=False) from None
            except (ConnectionError, OSError, http.client.HTTPException) as exc:
                conn.close()
                raise _Transient(f"cannot connect: {type(exc).__name__}: {exc}", down=True) from None
        self._local.used = True
        if reply.will_close:
            conn.close()
            self._local.conn = None
            self._local.used = False
        if reply.status == 200:
            try:
                return json.loads(payload)
            except ValueError:
                raise _Transient(f"HTTP 200 with a body that is not JSON: {payload[:200]!r}", down=False) from None
        message = _error_message(payload)
        if reply.status in RETRY_STATUS:
            raise _Transient(f"HTTP {reply.status}: {message}", down=False)
        raise RequestRefused(f"server refused the request (HTTP {reply.status}): {message}")

    def _call(self, method: str, path: str, body: dict | None = None, wait: float | None = None) -> dict:
        """_request with retries: connection loss for up to ``wait`` (default max_wait)
        seconds, other transient failures ``retries`` times, exponential backoff + jitter."""
        wait = self.max_wait if wait is None else wait
        failures, first_down = 0, None
        while True:
            if self._closed.is_set():
                raise ServerUnavailable("backend closed")
            if self._down_since is not None and wait == self.max_wait:
                wait = 0.0  # the server was already found down: one attempt, then fail fast
            try:
                out = self._request(method, path, body)
                if self._warned or self._down_since is not None:
                    with self._lock:
                        if self._warned or self._down_since is not None:
                            log.warning("server at %s answers again", self.base_url)
                            self._down_since, self._warned = None, False
                return out
            except _Transient as exc:
                now = time.monotonic()
                if exc.down:
                    first_down = first_down or now
                    if now - first_down >= wait:
                        with self._lock:
                            self._down_since = self._down_since or now
                        raise ServerUnavailable(f"no connection to {self.base_url} for {now - first_down:.0f} s "
                                                f"(max_wait={self.max_wait:g}): {exc}") from None
                    with self._lock:
                        warn, self._warned = not self._warned, True
                    if warn:  # once per outage, not once per waiting request
                        log.warning("server at %s unreachable (%s); retrying for up to %g s",
                                    self.base_url, exc, wait)
                else:
                    if failures >= self.retries:
                        raise RequestFailed(f"request failed after {failures + 1} attempts: {exc}") from None
                failures += 1
                with self._lock:
                    self.stats["retries"] += 1
                delay = min(30.0, self.backoff * 2 ** min(failures - 1, 10)) * (0.5 + random.random() / 2)
                if exc.down:
                    delay = min(delay, max(0.0, first_down + wait - now))
                self._closed.wait(delay)

    def _served_models(self, startup_wait: float) -> list[dict]:
        try:
            reply = self._call("GET", "/models", wait=startup_wait)
        except ServerUnavailable as exc:
            self._down_since = None
            raise HarnessError(f"no OpenAI-compatible server at {self.base_url} ({exc}); start it first, "
                               "or give startup_wait=SECONDS to wait for it") from None
        except (RequestRefused, RequestFailed) as exc:
            raise HarnessError(f"{self.base_url}/models: {exc}") from None
        data = reply.get("data") if isinstance(reply, dict) else None
        return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []

    def _pick_name(self, served_name: str | None) -> str:
        ids = [str(m.get("id")) for m in self.served]
        if served_name:
            return str(served_name)
        if self.model_arg in ids or not ids:
            return self.model_arg
        roots = {str(m.get("root")): str(m.get("id")) for m in self.served if m.get("root")}
        if self.local_dir is not None:
            for root, ident in roots.items():
                if Path(root).expanduser().resolve() == self.local_dir.resolve():
                    return ident
            if len(ids) == 1:
                return ids[0]
        raise UsageError(f"the server at {self.base_url} does not serve {self.model_arg!r}; it serves "
                         f"{', '.join(ids)}: pass that as --model or served_name=")

    # --------------------------------------------------------------- interface
    @property
    def conventions(self) -> ModelConventions:
        return self._conventions

    def _completion(self, messages: list, params: SamplingParams, n: int, seed: int | None) -> list[str]:
        body: dict[str, Any] = {"model": self.served_name, "messages": messages,
                                "max_tokens": int(params.max_new_tokens), "n": n}
        if params.greedy:
            body["temperature"] = 0.0
        else:
            body.update(temperature=float(params.temperature), top_p=float(params.top_p))
        if seed is not None:
            body["seed"] = seed
        reply = self._call("POST", "/chat/completions", body)
        try:
            choices = sorted(reply["choices"], key=lambda c: c.get("index", 0))
            texts = [_content_text(c["message"].get("content")) for c in choices]
        except (KeyError, TypeError, AttributeError, ValueError):
            raise RequestFailed(f"reply without choices/message text: {json.dumps(reply)[:200]}") from None
        if not texts:  # the server answered nothing: not the model's empty answer
            raise RequestFailed(f"reply with no choices: {json.dumps(reply)[:200]}")
        usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
        with self._lock:
            self.stats["requests"] += 1
            for key in ("completion_tokens", "prompt_tokens"):  # counts only: a malformed one is skipped
                if isinstance(usage.get(key), int) and not isinstance(usage.get(key), bool):
                    self.stats[key] += usage[key]
        return texts

    def _one(self, prompt: Prompt, params: SamplingParams, seed: int) -> list[str]:
        messages = openai_messages(prompt)
        if params.greedy:
            return self._completion(messages, params, 1, None)[:1] * params.n
        send = seed if self.send_seed else None
        out = self._completion(messages, params, params.n, send) if self.native_n else []
        k = 1
        while len(out) < params.n:  # a server without n: one request per completion, seeds seed+k
            out += self._completion(messages, params, 1, None if send is None else (send + k) & 0x7FFFFFFF)
            k += 1
        return out[: params.n]

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[str]]:
        if params.n < 1:
            raise ValueError("SamplingParams.n must be >= 1")
        seeds = prompt_seeds(prompts, params.seed)
        keys = [(p, params, s) for p, s in zip(prompts, seeds)]
        # completions kept from a failed batch serve the evaluator's per-prompt retries of it
        results: list[list[str] | None] = [self._kept.pop(k, None) for k in keys]
        futures = {i: self._pool.submit(self._one, p, params, s)
                   for i, (p, s) in enumerate(zip(prompts, seeds)) if results[i] is None}
        error: BaseException | None = None
        for i, fut in futures.items():
            try:
                results[i] = fut.result()
            except Exception as exc:  # noqa: BLE001 (re-raised below, after the others finish)
                error = error or exc
        if error is not None:
            # the evaluator retries prompt by prompt: keep what succeeded so it is not asked again
            self._kept.update((k, r) for k, r in zip(keys, results) if r is not None)
            while len(self._kept) > 4096:  # never asked for again (not retried): forget the oldest
                self._kept.pop(next(iter(self._kept)))
            raise error
        return results  # type: ignore[return-value]

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            if self.local_dir is not None:
                from harness.backends.hf import weights_fingerprint

                self._fingerprint = weights_fingerprint(self.local_dir)
            else:
                self._fingerprint = hashlib.sha256(f"openai:{self.served_name}".encode()).hexdigest()
        return self._fingerprint

    def describe(self) -> dict:
        info = super().describe()
        root = next((m.get("root") for m in self.served if m.get("id") == self.served_name), None)
        info.update(model=self.model_arg, served_name=self.served_name, base_url=self.base_url, served_root=root)
        return info

    def close(self) -> None:
        """Stops at once (also on Ctrl-C while requests wait for a server): pending requests
        are cancelled, retry waits end, open connections are cut."""
        self._closed.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _content_text(content: Any) -> str:
    """A choice's message content as text: a string, null (no text: ""), or a list of content
    parts whose text parts are joined; anything else raises ValueError (a malformed reply)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        texts = [p.get("text") for p in content if p.get("type", "text") == "text"]
        if all(isinstance(t, str) for t in texts):
            return "".join(texts)
    raise ValueError(f"message content is {type(content).__name__}, not text")


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("true", "1")


def _error_message(payload: bytes) -> str:
    try:
        data = json.loads(payload)
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = err.get("message", err) if isinstance(err, dict) else err
        text = str(msg)
    except ValueError:
        text = payload.decode("utf-8", "replace")
    text = " ".join(text.split())
    return text[:300] + ("..." if len(text) > 300 else "")


__all__ = ["OpenAIBackend", "RequestFailed", "RequestRefused", "ServerUnavailable", "openai_messages", "prompt_seeds"]
