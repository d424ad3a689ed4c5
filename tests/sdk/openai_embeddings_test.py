"""The official OpenAI Python SDK's embeddings against a running tierwise, with the real
SmolLM2 on llama-server (started with --embeddings) behind it.

Run by the Rust integration test `embeddings::the_python_sdk_embeds_through_tierwise`.
"""
import math
import os
import unittest

import openai

BASE_URL = os.environ["TIERWISE_BASE_URL"]


def client() -> openai.OpenAI:
    return openai.OpenAI(base_url=BASE_URL, api_key="not-needed", max_retries=0, timeout=60)


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


class Embeddings(unittest.TestCase):
    def test_create_with_the_sdks_default_base64(self):
        result = client().embeddings.create(model="embed", input=["the cat sat on the mat", "a cat sat on a mat", "tax law of 1998"])
        self.assertEqual(len(result.data), 3)
        vectors = [d.embedding for d in result.data]
        self.assertEqual(len({len(v) for v in vectors}), 1)
        self.assertGreater(len(vectors[0]), 100)
        self.assertGreater(cosine(vectors[0], vectors[1]), cosine(vectors[0], vectors[2]))
        self.assertGreater(result.usage.prompt_tokens, 0)

    def test_create_as_floats(self):
        raw = client().embeddings.with_raw_response.create(model="embed", input="hello world", encoding_format="float")
        self.assertEqual(raw.headers["x-tierwise-tier"], "local")
        self.assertTrue(raw.headers["x-tierwise-attempts"].startswith("local/embed:accept:"))
        result = raw.parse()
        self.assertIsInstance(result.data[0].embedding[0], float)

    def test_a_chat_task_is_not_an_embedding_model(self):
        with self.assertRaises(openai.BadRequestError) as caught:
            client().embeddings.create(model="chat", input="hello")
        self.assertEqual(caught.exception.body["param"], "model")
        self.assertIn("does not serve embeddings", caught.exception.body["message"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
