"""The Responses API through tierwise's chain: a local double whose answer is cut off
(rejected by `finish_stop`), then a cloud double that calls a function — JSON and
streamed, tools translated both ways.

Run by the Rust integration test `responses::responses_escalate_with_feedback_and_tools`,
which starts the doubles and tierwise, sets TIERWISE_BASE_URL, and checks what the doubles
received.
"""
import json
import os
import unittest

import openai

BASE_URL = os.environ["TIERWISE_BASE_URL"]
TOOLS = [{"type": "function", "name": "get_current_weather", "description": "The weather in a city",
          "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}]


def client() -> openai.OpenAI:
    return openai.OpenAI(base_url=BASE_URL, api_key="not-needed", max_retries=0, timeout=60)


class ResponsesThroughTheChain(unittest.TestCase):
    def test_an_escalated_function_call(self):
        raw = client().responses.with_raw_response.create(model="chat", input="Weather in Boston?", tools=TOOLS)
        self.assertEqual(raw.headers["x-tierwise-tier"], "cloud")
        self.assertTrue(raw.headers["x-tierwise-attempts"].startswith("local/small:escalate"), raw.headers["x-tierwise-attempts"])
        response = raw.parse()
        call = response.output[0]
        self.assertEqual((call.type, call.name, call.call_id), ("function_call", "get_current_weather", "call_abc123"))
        self.assertEqual(json.loads(call.arguments), {"location": "Boston, MA"})
        self.assertEqual(response.model_extra["tierwise"]["attempts"][0]["verdict"], "escalate")

    def test_an_escalated_function_call_streamed(self):
        stream = client().responses.create(model="chat", input="Weather in Boston?", tools=TOOLS, stream=True)
        events = list(stream)
        kinds = [e.type for e in events]
        self.assertIn("response.function_call_arguments.delta", kinds)
        done = next(e for e in events if e.type == "response.function_call_arguments.done")
        self.assertEqual(json.loads(done.arguments), {"location": "Boston, MA"})
        self.assertEqual(events[-1].type, "response.completed")
        self.assertEqual(events[-1].response.output[0].name, "get_current_weather")

    def test_a_function_call_output_goes_back_as_a_tool_message(self):
        response = client().responses.create(model="chat", tools=TOOLS, input=[
            {"role": "user", "content": "Weather in Boston?"},
            {"type": "function_call", "call_id": "call_abc123", "name": "get_current_weather", "arguments": "{\"location\": \"Boston, MA\"}"},
            {"type": "function_call_output", "call_id": "call_abc123", "output": "22 C, sunny"},
        ])
        self.assertEqual(response.status, "completed")


if __name__ == "__main__":
    unittest.main(verbosity=2)
