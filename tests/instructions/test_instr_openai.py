"""The `openai` teacher against a real HTTP server on loopback that injects faults."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from instructrec.instructions.builder import BuildSettings, build_instructions
from instructrec.instructions.teachers import OpenAISettings, OpenAITeacher, TeacherError, TeacherRequest
from instructrec.instructions.templates import load_templates


class FakeServer:
    """An OpenAI-compatible /v1/chat/completions whose first replies follow `script`.

    Script steps: "429", "500", "garbage" (malformed JSON), "nochoices", "timeout" (sleeps past the
    client timeout), "401", "ok"; after the script every request gets "ok" (or `then`)."""

    def __init__(self, script: list[str] | None = None, then: str = "ok") -> None:
        self.script, self.then = list(script or []), then
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.statuses: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    step = outer.script.pop(0) if outer.script else outer.then
                    outer.requests.append(body)
                    outer.statuses.append(step)
                if step == "timeout":
                    time.sleep(0.6)
                    step = "ok"
                if step in ("429", "500", "401"):
                    self.send_response(int(step))
                    if step == "429":
                        self.send_header("Retry-After", "0")
                    self.end_headers()
                    self.wfile.write(b'{"error": "injected"}')
                    return
                if step == "garbage":
                    payload = b'{"choices": [ this is not json'
                elif step == "nochoices":
                    payload = b'{"object": "chat.completion"}'
                else:
                    prompt = body["messages"][-1]["content"]
                    text = ("a cosy puzzle game for a handheld console" if "search phrase" in prompt
                            else "I need something fun for my nephew's birthday." if "need something" in prompt
                            else "I enjoy long role-playing games and racing games.")
                    payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _settings(url: str, **kw) -> OpenAISettings:
    base = {"base_url": url, "model": "fake", "api_key": "k", "timeout_s": 0.3, "backoff_s": 0.01,
            "max_retries": 4, "concurrency": 1, "max_consecutive_failures": 6}
    return OpenAISettings(**{**base, **kw})


def _requests(dataset, n=3):
    seq = dataset.sequences[0]
    return ([TeacherRequest("preference", "u", history=tuple(int(i) for i in seq[:10]))]
            + [TeacherRequest("specific_intention", "u", item=int(seq[i])) for i in range(n)]
            + [TeacherRequest("vague_intention", "u", item=int(seq[5]))])


def test_retries_timeouts_429_500_and_garbage(movielens, tmp_path):
    with FakeServer(["429", "500", "garbage", "timeout", "nochoices"]) as server:
        # the first request meets all five faults in turn and succeeds on its sixth try
        teacher = OpenAITeacher(_settings(server.url, max_retries=5), cache_path=tmp_path / "c.sqlite").fit(movielens)
        answers = teacher.answer(_requests(movielens))
    assert [a.source for a in answers] == ["llm"] * 5
    assert answers[0].text.startswith("I enjoy") and answers[1].text.startswith("a cosy puzzle")
    assert "birthday" in answers[-1].text
    assert teacher.failures == 0
    assert server.statuses[:5] == ["429", "500", "garbage", "timeout", "nochoices"]
    assert server.requests[0]["model"] == "fake" and server.requests[0]["messages"][0]["role"] == "system"


def test_cache_prevents_repeat_calls(movielens, tmp_path):
    with FakeServer() as server:
        first = OpenAITeacher(_settings(server.url), cache_path=tmp_path / "c.sqlite").fit(movielens)
        a = first.answer(_requests(movielens))
        sent = len(server.requests)
        assert sent == 5 and first.calls == 5
        first.close()
        again = OpenAITeacher(_settings(server.url), cache_path=tmp_path / "c.sqlite").fit(movielens)
        b = again.answer(_requests(movielens))
        assert len(server.requests) == sent and again.calls == 0 and a == b
        # a different model is a different request
        other = OpenAITeacher(_settings(server.url, model="other"), cache_path=tmp_path / "c.sqlite").fit(movielens)
        other.answer(_requests(movielens)[:1])
        assert len(server.requests) == sent + 1


def test_persistent_garbage_falls_back_counted(movielens, tmp_path):
    with FakeServer(then="garbage") as server:
        teacher = OpenAITeacher(_settings(server.url, max_retries=1, max_consecutive_failures=100),
                                cache_path=tmp_path / "c.sqlite").fit(movielens)
        stats = build_instructions(movielens, load_templates(), teacher, {"P2,I0,T3": 1, "T0": 0, "T1": 0, "T2": 0,
                                   "P1,I0,T3": 0, "P0,I2,T3": 0, "P1,I1,T3": 0, "P1,I2,T3": 0, "P2,I2,T3": 0,
                                   "P2,I1,T3": 0, "P1+P2,I0,T3": 0, "P0,I1,T3": 0, "P1+P2,I2,T3": 0},
                                   "train", 0, tmp_path / "out", BuildSettings(max_examples=6))
    assert len(server.requests) == 12  # 6 requests x (1 try + 1 retry)
    assert stats["teacher_failures"] == 6 == stats["teacher_fallbacks"]
    assert stats["per_teacher_source"] == {"preference:fallback:llm-failed": 6}


def test_endpoint_down_is_a_clear_error(movielens, tmp_path):
    with FakeServer() as server:
        url = server.url
    teacher = OpenAITeacher(_settings(url, max_retries=0), cache_path=tmp_path / "c.sqlite").fit(movielens)
    with pytest.raises(TeacherError, match=r"failed \d+ requests in a row.*connection error"):
        teacher.answer(_requests(movielens, n=8))


def test_bad_key_is_a_clear_error(movielens, tmp_path):
    with FakeServer(then="401") as server:
        teacher = OpenAITeacher(_settings(server.url), cache_path=tmp_path / "c.sqlite").fit(movielens)
        with pytest.raises(TeacherError, match="refused the key"):
            teacher.answer(_requests(movielens)[:1])
