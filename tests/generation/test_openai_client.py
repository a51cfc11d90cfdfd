import pytest
from fake_openai_server import FakeOpenAI, free_port

from langshift.generation.interface import GenerationOptions
from langshift.generation.openai_client import OpenAIError, OpenAIGenerator
from langshift.generation.outcomes import GenerationFailure


@pytest.fixture
def server():
  def start(fail_first=0):
    srv = FakeOpenAI(fail_first).start()
    servers.append(srv)
    return srv, srv.url

  servers = []
  yield start
  for srv in servers:
    srv.stop()


def test_chat_and_completions_round_trip_with_sampling_fields(server):
  srv, url = server()
  gen = OpenAIGenerator(url, "tiny", api_key="k", max_concurrency=3, timeout_s=5)
  opts = GenerationOptions(
      max_new_tokens=7, temperature=0.5, top_k=4, top_p=0.9, seed=10, stop=(" END",)
  )
  convs = [[{"role": "user", "content": f"hi {i}"}] for i in range(5)]
  assert gen.chat(convs, opts) == [f"echo: hi {i}" for i in range(5)]
  assert gen.complete(["abc", "xy"], opts) == ["cba", "yx"]  # cut at the stop string
  assert len(srv.requests) == 7
  path, body, auth = sorted(srv.requests, key=lambda r: (r[0], r[1].get("seed")))[0]
  assert path == "/v1/chat/completions" and auth == "Bearer k"
  assert body["model"] == "tiny" and body["max_tokens"] == 7 and body["temperature"] == 0.5
  assert body["top_k"] == 4 and body["top_p"] == 0.9 and body["stop"] == [" END"]
  assert sorted(b["seed"] for p, b, _ in srv.requests if p.endswith("chat/completions")) == list(
      range(10, 15)
  )


def test_transient_errors_are_retried_a_bounded_number_of_times(server):
  srv, url = server(fail_first=2)
  gen = OpenAIGenerator(url, "m", max_retries=2, backoff_s=0.01, timeout_s=5)
  assert gen.chat([[{"role": "user", "content": "x"}]], GenerationOptions()) == ["echo: x"]
  assert len(srv.requests) == 3
  srv2, url2 = server(fail_first=100)
  with pytest.raises(OpenAIError, match="503"):
    OpenAIGenerator(url2, "m", max_retries=1, backoff_s=0.01, timeout_s=5).complete(
        ["x"], GenerationOptions()
    )
  assert len(srv2.requests) == 2


def _user(text):
  return [{"role": "user", "content": text}]


def test_one_failed_request_keeps_the_other_results(server):
  srv, url = server()
  gen = OpenAIGenerator(url, "m", max_concurrency=3, max_retries=2, backoff_s=0.01, timeout_s=5)
  texts = ["a", "b", "status:400:invalid_request_error:bad role", "c", "d"]
  outcomes = gen.chat_outcomes([_user(t) for t in texts], GenerationOptions())
  assert outcomes[:2] + outcomes[3:] == ["echo: a", "echo: b", "echo: c", "echo: d"]
  failure = outcomes[2]
  assert isinstance(failure, GenerationFailure)
  assert failure.endpoint == url + "/chat/completions" and failure.status == 400
  assert failure.kind == "http" and failure.attempts == 1 and not failure.transient
  assert "bad role" in failure.message and url in str(failure)
  assert gen.usage["requests"] == 4
  # The list[str] methods raise one line naming the endpoint, once every request has finished.
  srv.requests.clear()
  with pytest.raises(OpenAIError) as raised:
    gen.chat([_user(t) for t in texts], GenerationOptions())
  assert len(srv.requests) == 5 and len(raised.value.failures) == 1
  assert "\n" not in str(raised.value) and url + "/chat/completions" in str(raised.value)
  assert gen.complete_outcomes(["ab", "status:422"], GenerationOptions())[0] == "ba END tail"


def test_a_500_that_names_an_invalid_request_is_not_retried(server):
  srv, url = server()
  gen = OpenAIGenerator(url, "m", max_retries=3, backoff_s=0.01, timeout_s=5)
  texts = [
      "status:500:invalid_request_error:messages must alternate",
      "status:500:internal_server_error:Requested tokens (3000) exceed context window of 2048",
      "status:500:server_error:the request exceeds the available context size",
      # llama-cpp-python 0.3.36, messages not a list:
      "status:500:internal_server_error:1 validation error:\n  {'type': 'list_type', 'loc': "
      "('body', 'messages'), 'msg': 'Input should be a valid list', 'input': 'x'}",
  ]
  outcomes = gen.chat_outcomes([_user(t) for t in texts], GenerationOptions())
  assert [(o.status, o.attempts, o.transient) for o in outcomes] == [(500, 1, False)] * 4
  assert all(o.message.startswith("invalid request: ") for o in outcomes)
  assert "\n" not in outcomes[3].message and len(srv.requests) == 4
  # A 500 that does not blame the request may be a passing fault: retried, then reported.
  [failure] = gen.chat_outcomes(
      [_user("status:500:server_error:out of memory")], GenerationOptions()
  )
  assert (failure.status, failure.attempts, failure.transient) == (500, 4, True)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_never_retried(server, status):
  srv, url = server()
  gen = OpenAIGenerator(url, "m", max_retries=3, backoff_s=0.01, timeout_s=5)
  [failure] = gen.complete_outcomes([f"status:{status}"], GenerationOptions())
  assert failure.status == status and failure.attempts == 1 and len(srv.requests) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried_until_they_pass(server, status):
  srv, url = server()
  gen = OpenAIGenerator(url, "m", max_retries=3, backoff_s=0.01, timeout_s=5)
  assert gen.chat_outcomes([_user(f"flaky:2:{status}")], GenerationOptions()) == [
      f"echo: flaky:2:{status}"
  ]
  assert len(srv.requests) == 3


def test_max_new_tokens_of_zero_is_refused_before_sending(server):
  srv, url = server()
  gen = OpenAIGenerator(url, "m", timeout_s=5)
  for call in (gen.chat_outcomes, gen.chat):
    with pytest.raises(ValueError, match="max_new_tokens=0"):
      call([_user("x")], GenerationOptions(max_new_tokens=0))
  with pytest.raises(ValueError, match="max_new_tokens=-1"):
    gen.complete(["x"], GenerationOptions(max_new_tokens=-1))
  assert not srv.requests


def test_refused_reset_and_timed_out_requests_are_retried_then_reported(server):
  down = f"http://127.0.0.1:{free_port()}/v1"
  gen = OpenAIGenerator(down, "m", max_retries=2, backoff_s=0.01, timeout_s=5)
  [refused] = gen.chat_outcomes([_user("x")], GenerationOptions())
  assert (refused.kind, refused.attempts, refused.transient) == ("connection", 3, True)
  assert refused.endpoint == down + "/chat/completions" and refused.status is None
  srv, url = server()
  gen = OpenAIGenerator(url, "m", max_retries=1, backoff_s=0.01, timeout_s=0.3)
  reset, slow, fine = gen.chat_outcomes(
      [_user("reset"), _user("sleep:1"), _user("ok")], GenerationOptions()
  )
  assert (reset.kind, reset.attempts, reset.transient) == ("connection", 2, True)
  assert (slow.kind, slow.attempts, slow.transient) == ("timeout", 2, True)
  assert fine == "echo: ok"
  assert srv.seen["reset"] == 2 and srv.seen["sleep:1"] == 2


def test_keeps_max_concurrency_requests_in_flight_over_the_batch(server):
  srv, url = server()
  gen = OpenAIGenerator(url, "m", max_concurrency=4, timeout_s=10)
  outcomes = gen.chat_outcomes([_user("sleep:0.2")] * 12, GenerationOptions())
  assert outcomes == ["echo: sleep:0.2"] * 12
  assert srv.max_in_flight == 4
