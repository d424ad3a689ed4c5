"""A client key's rate limit through the official OpenAI Python SDK.

Run by `limits::the_python_sdk_raises_its_rate_limit_error`, which starts an upstream
double and tierwise with key `key-a` limited to 2 requests per minute and key `key-b`
unlimited, and sets TIERWISE_BASE_URL. The SDK's own retries are off, so the 429 reaches
the test as the SDK raises it.
"""
import os
import unittest

import openai

BASE_URL = os.environ["TIERWISE_BASE_URL"]


def client(key):
    return openai.OpenAI(base_url=BASE_URL, api_key=key, max_retries=0, timeout=30)


def ask(key):
    return client(key).chat.completions.create(
        model="local-model", messages=[{"role": "user", "content": "Say hello."}]
    )


class RateLimitThroughTheSDK(unittest.TestCase):
    def test_over_the_limit_is_a_rate_limit_error_with_retry_after(self):
        for _ in range(2):
            self.assertTrue(ask("key-a").choices[0].message.content)
        with self.assertRaises(openai.RateLimitError) as caught:
            ask("key-a")
        err = caught.exception
        self.assertEqual(err.status_code, 429)
        self.assertEqual(err.code, "rate_limit_exceeded")
        self.assertEqual(err.type, "rate_limit_error")
        self.assertIn("requests_per_minute", err.message)
        self.assertTrue(1 <= int(err.response.headers["retry-after"]) <= 30)

    def test_another_key_is_not_limited(self):
        for _ in range(4):
            self.assertTrue(ask("key-b").choices[0].message.content)


if __name__ == "__main__":
    unittest.main(verbosity=2)
