"""Verification and escalation through the official OpenAI Python SDK.

Run by `verify_e2e::verification_with_the_real_model_through_the_python_sdk`: the real
local model (SmolLM2 on llama-server) is the first step and the judge; cloud doubles
answer when its output is rejected.
"""
import os
import unittest

import openai

client = openai.OpenAI(base_url=os.environ["TIERWISE_BASE_URL"], api_key="unused", max_retries=0, timeout=120)
ASK = [{"role": "user", "content": "Give me a ticket code."}]


class VerifyThroughTheSDK(unittest.TestCase):
    def test_rejected_local_answer_escalates_json(self):
        raw = client.chat.completions.with_raw_response.create(model="code-json", messages=ASK, max_tokens=16)
        self.assertEqual(raw.headers["x-tierwise-tier"], "cloud")
        self.assertTrue(raw.headers["x-tierwise-attempts"].startswith("local/smollm2:escalate:"))
        completion = raw.parse()
        self.assertEqual(completion.choices[0].message.content, "ZX-1234")
        # The SDK keeps unknown fields: the trail is in the body.
        trail = completion.model_extra["tierwise"]
        self.assertIn("does not match the required pattern", trail["attempts"][0]["feedback"])

    def test_rejected_local_answer_escalates_streaming_and_is_never_seen(self):
        stream = client.chat.completions.create(
            model="code-sse", messages=ASK, max_tokens=16, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, "ZX-5678")
        self.assertEqual(chunks[-1].choices, [])
        self.assertEqual(chunks[-1].usage.total_tokens, 7)

    def test_the_real_model_judges_the_real_model(self):
        raw = client.chat.completions.with_raw_response.create(
            model="judged", messages=[{"role": "user", "content": "Name a colour."}], max_tokens=16
        )
        completion = raw.parse()
        first = completion.model_extra["tierwise"]["attempts"][0]
        self.assertEqual(first["model"], "smollm2")
        self.assertIn(first["verdict"], ["accept", "escalate"])
        self.assertGreater(first["verify_ms"], 1.0, "the judge was called")
        self.assertTrue(completion.choices[0].message.content)

    def test_an_accepted_verified_stream_replays_tool_calls_and_usage(self):
        stream = client.chat.completions.create(
            model="tools",
            messages=[{"role": "user", "content": "Weather in Oslo?"}],
            tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
            stream=True,
            stream_options={"include_usage": True},
        )
        calls = {}
        usage = None
        finish = None
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for call in choice.delta.tool_calls or []:
                    entry = calls.setdefault(call.index, {"name": "", "arguments": ""})
                    if call.function.name:
                        entry["name"] = call.function.name
                    entry["arguments"] += call.function.arguments or ""
        self.assertEqual(calls, {0: {"name": "get_weather", "arguments": '{"city":"Oslo"}'}})
        self.assertEqual(finish, "tool_calls")
        self.assertEqual(usage.total_tokens, 7)


if __name__ == "__main__":
    unittest.main(verbosity=2)
