"""The official OpenAI Python SDK reading answers from tierwise's response cache.

Run by the Rust integration test `sdk::the_python_sdk_reads_cached_answers_as_json_and_streams`,
which starts llama-server and tierwise (task chat cached) and sets TIERWISE_BASE_URL.
"""
import os
import unittest

import openai

BASE_URL = os.environ["TIERWISE_BASE_URL"]


def client() -> openai.OpenAI:
    return openai.OpenAI(base_url=BASE_URL, api_key="not-needed", max_retries=0, timeout=60)


MESSAGES = [{"role": "user", "content": "Name three colours."}]


class CachedAnswers(unittest.TestCase):
    def test_a_stream_replays_the_cached_answer_with_a_marked_usage_chunk(self):
        first = client().chat.completions.with_raw_response.create(
            model="chat", messages=MESSAGES, max_tokens=24, temperature=0)
        self.assertEqual(first.headers["x-tierwise-cache"], "miss")
        answer = first.parse()
        raw = client().chat.completions.with_raw_response.create(
            model="chat", messages=MESSAGES, max_tokens=24, temperature=0, stream=True,
            stream_options={"include_usage": True})
        self.assertEqual(raw.headers["x-tierwise-cache"], "hit")
        chunks = list(raw.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, answer.choices[0].message.content)
        usage = chunks[-1].usage
        self.assertIsNotNone(usage, "the usage chunk comes last")
        self.assertEqual(usage.prompt_tokens, answer.usage.prompt_tokens)
        self.assertEqual(usage.prompt_tokens_details.cached_tokens, answer.usage.prompt_tokens)

    def test_json_hit_is_the_same_completion(self):
        messages = [{"role": "user", "content": "Say yes."}]
        first = client().chat.completions.create(model="chat", messages=messages, max_tokens=8, seed=3)
        raw = client().chat.completions.with_raw_response.create(model="chat", messages=messages, max_tokens=8, seed=3)
        self.assertEqual(raw.headers["x-tierwise-cache"], "hit")
        self.assertEqual(raw.headers["x-tierwise-attempts"], "cache:hit")
        again = raw.parse()
        self.assertEqual(again.id, first.id)
        self.assertEqual(again.choices[0].message.content, first.choices[0].message.content)

    def test_only_if_cached_on_a_miss_raises_a_504(self):
        with self.assertRaises(openai.APIStatusError) as raised:
            client().chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "Never asked before."}], temperature=0,
                extra_headers={"x-tierwise-cache": "only"})
        self.assertEqual(raised.exception.status_code, 504)
        self.assertEqual(raised.exception.code, "cache_miss")


if __name__ == "__main__":
    unittest.main(verbosity=2)
