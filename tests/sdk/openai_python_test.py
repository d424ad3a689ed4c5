"""The official OpenAI Python SDK against a running tierwise.

Run by the Rust integration test `sdk::the_official_python_sdk_works_through_tierwise`,
which starts llama-server and tierwise and sets TIERWISE_BASE_URL.
"""
import os
import unittest

import openai

BASE_URL = os.environ["TIERWISE_BASE_URL"]


def client() -> openai.OpenAI:
    # The SDK's own retries would hide errors; tierwise escalates for it.
    return openai.OpenAI(base_url=BASE_URL, api_key="not-needed", max_retries=0, timeout=60)


MESSAGES = [{"role": "user", "content": "Say hello in five words."}]


class OpenAIPythonSDK(unittest.TestCase):
    def test_create(self):
        completion = client().chat.completions.create(model="chat", messages=MESSAGES, max_tokens=24)
        self.assertEqual(completion.object, "chat.completion")
        text = completion.choices[0].message.content
        self.assertIsInstance(text, str)
        self.assertGreaterEqual(len(text.split()), 2, text)
        self.assertGreater(completion.usage.completion_tokens, 0)

    def test_create_reports_the_trail_in_headers(self):
        raw = client().chat.completions.with_raw_response.create(model="chat", messages=MESSAGES, max_tokens=8)
        self.assertEqual(raw.headers["x-tierwise-tier"], "local")
        self.assertTrue(raw.headers["x-tierwise-attempts"].startswith("local/smollm2:accept:"))
        self.assertTrue(raw.parse().choices[0].message.content)

    def test_stream(self):
        stream = client().chat.completions.create(model="chat", messages=MESSAGES, max_tokens=24, stream=True)
        parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
        self.assertGreaterEqual(len("".join(parts).split()), 2, parts)

    def test_stream_with_usage(self):
        stream = client().chat.completions.create(
            model="chat",
            messages=MESSAGES,
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertTrue(text.strip(), chunks)
        last = chunks[-1]
        self.assertEqual(last.choices, [])
        self.assertGreater(last.usage.total_tokens, 0)

    def test_models_list(self):
        ids = [m.id for m in client().models.list()]
        self.assertEqual(ids, ["chat", "smollm2"])

    def test_unknown_model_raises_not_found(self):
        with self.assertRaises(openai.NotFoundError) as caught:
            client().chat.completions.create(model="gpt-nope", messages=MESSAGES)
        self.assertEqual(caught.exception.code, "model_not_found")
        self.assertIn("chat, smollm2", caught.exception.message)

    def test_bad_request_raises_bad_request(self):
        with self.assertRaises(openai.BadRequestError) as caught:
            client().chat.completions.create(model="chat", messages=[])
        self.assertEqual(caught.exception.param, "messages")


if __name__ == "__main__":
    unittest.main(verbosity=2)
