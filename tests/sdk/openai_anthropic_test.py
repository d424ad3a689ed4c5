"""The official OpenAI Python SDK against tierwise, with Anthropic upstreams behind it.

Run by the Rust integration test
`anthropic::the_official_python_sdk_works_through_an_anthropic_upstream`, which starts
tierwise with two tasks and sets TIERWISE_BASE_URL:

- `chat`: llama-server's Anthropic endpoint (`/v1/messages`) serving SmolLM2 with a
  tool-capable chat template, as a `kind = "anthropic"` upstream;
- `recorded`: an upstream double streaming the Anthropic documentation's tool-use
  example (`tests/fixtures/anthropic/stream_docs_tool_use.sse`).

The SDK only ever sees OpenAI's shapes.
"""
import json
import os
import unittest

import openai

BASE_URL = os.environ["TIERWISE_BASE_URL"]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def client() -> openai.OpenAI:
    # The SDK's own retries would hide errors; tierwise escalates for it.
    return openai.OpenAI(base_url=BASE_URL, api_key="not-needed", max_retries=0, timeout=60)


def weather_conversation(city):
    """Few-shot: the 135M model calls a tool reliably only after seeing it done."""

    def call(i, name):
        arguments = json.dumps({"city": name})
        return {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{i}", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]}

    return [
        {"role": "user", "content": "What is the weather in London?"}, call(0, "London"),
        {"role": "user", "content": "What is the weather in Berlin?"}, call(1, "Berlin"),
        {"role": "user", "content": f"What is the weather in {city}?"},
    ]


class OpenAISDKThroughAnthropic(unittest.TestCase):
    def test_create(self):
        completion = client().chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "Say hello in five words."}], max_tokens=24)
        self.assertEqual(completion.object, "chat.completion")
        text = completion.choices[0].message.content
        self.assertGreaterEqual(len(text.split()), 2, text)
        self.assertIn(completion.choices[0].finish_reason, ("stop", "length"))
        self.assertGreater(completion.usage.completion_tokens, 0)

    def test_stream_with_usage(self):
        chunks = list(client().chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "Name three colours."}], max_tokens=24,
            stream=True, stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertGreaterEqual(len(text.split()), 2, text)
        last = chunks[-1]
        self.assertEqual(last.choices, [])
        self.assertEqual(last.usage.total_tokens, last.usage.prompt_tokens + last.usage.completion_tokens)
        self.assertGreater(last.usage.completion_tokens, 0)

    def test_tool_call_and_its_result(self):
        messages = weather_conversation("Paris")
        completion = client().chat.completions.create(
            model="chat", messages=messages, tools=[WEATHER_TOOL], temperature=0, max_tokens=60)
        choice = completion.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        call = choice.message.tool_calls[0]
        self.assertEqual(call.function.name, "get_weather")
        self.assertEqual(json.loads(call.function.arguments), {"city": "Paris"})

        messages.append(choice.message.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": "15 degrees, rainy"})
        answer = client().chat.completions.create(
            model="chat", messages=messages, tools=[WEATHER_TOOL], temperature=0, max_tokens=60)
        self.assertEqual(answer.choices[0].finish_reason, "stop")
        self.assertIn("15 degrees", answer.choices[0].message.content)

    def test_streamed_tool_call_from_the_real_model(self):
        # The SDK's stream helper assembles the tool-call deltas into `tool_calls`.
        with client().chat.completions.stream(
            model="chat", messages=weather_conversation("Paris"), tools=[WEATHER_TOOL], temperature=0, max_tokens=60,
        ) as stream:
            final = stream.get_final_completion()
        call = final.choices[0].message.tool_calls[0]
        self.assertEqual(final.choices[0].finish_reason, "tool_calls")
        self.assertEqual(call.function.name, "get_weather")
        self.assertEqual(json.loads(call.function.arguments), {"city": "Paris"})

    def test_streamed_tool_call_from_the_recorded_anthropic_stream(self):
        chunks = list(client().chat.completions.create(
            model="recorded", messages=[{"role": "user", "content": "Weather in San Francisco?"}],
            tools=[WEATHER_TOOL], stream=True))
        with client().chat.completions.stream(
            model="recorded", messages=[{"role": "user", "content": "Weather in San Francisco?"}],
            tools=[WEATHER_TOOL],
        ) as stream:
            final = stream.get_final_completion()
        message = final.choices[0].message
        self.assertEqual(message.content, "Okay, let's check the weather for San Francisco:")
        self.assertEqual(len(message.tool_calls), 1)
        call = message.tool_calls[0]
        self.assertEqual(call.id, "toolu_01T1x1fJ34qAmk2tNTrN7Up6")
        self.assertEqual(call.function.name, "get_weather")
        self.assertEqual(json.loads(call.function.arguments), {"location": "San Francisco, CA"})
        self.assertEqual(final.choices[0].finish_reason, "tool_calls")
        # The raw chunks: the call opens with its id and name, then argument pieces.
        deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        self.assertEqual(deltas[0].id, "toolu_01T1x1fJ34qAmk2tNTrN7Up6")
        self.assertGreater(len(deltas), 1)

    def test_a_request_anthropic_cannot_serve_is_an_api_error(self):
        with self.assertRaises(openai.APIStatusError) as caught:
            client().chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "Hi"}], n=2, max_tokens=8)
        self.assertEqual(caught.exception.status_code, 502)
        self.assertIn("cannot serve this request", caught.exception.message)


if __name__ == "__main__":
    unittest.main(verbosity=2)
