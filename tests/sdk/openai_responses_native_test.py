"""The official OpenAI Python SDK's Responses API against a running tierwise whose
llama-server upstream is configured with `responses = "native"`: tierwise passes the
request to llama-server's own `POST /v1/responses` and its answer back as it came.

Not tested here: the SDK's `responses.stream()` helper. llama-server's own stream events
carry no `output_index` / `content_index`, which the helper indexes by (TypeError in
openai's ResponseStreamState), and tierwise passes them on unchanged. docs/api.md says to
keep llama-server on `responses = "translate"`, whose events the helper reads.

Run by the Rust integration test
`responses_native::the_python_sdk_responses_api_passed_through_to_llama_server`, which
starts llama-server and tierwise and sets TIERWISE_BASE_URL.
"""
import os
import unittest

import openai

BASE_URL = os.environ["TIERWISE_BASE_URL"]
QUESTION = "What is the capital of France? Answer in one word."


def client() -> openai.OpenAI:
    return openai.OpenAI(base_url=BASE_URL, api_key="not-needed", max_retries=0, timeout=60)


class NativeResponsesAPI(unittest.TestCase):
    def test_create(self):
        raw = client().responses.with_raw_response.create(
            model="chat", instructions="You answer in one word.", input=QUESTION, max_output_tokens=16
        )
        self.assertEqual(raw.headers["x-tierwise-tier"], "local")
        response = raw.parse()
        self.assertEqual(response.object, "response")
        self.assertTrue(response.output_text.strip(), response)
        self.assertGreater(response.usage.output_tokens, 0)
        # llama-server's own object: it has completed_at, which tierwise's translation never writes.
        completed_at = getattr(response, "completed_at", None) or response.model_extra.get("completed_at")
        self.assertIsNotNone(completed_at, response)
        self.assertEqual(response.model_extra["tierwise"]["attempts"][0]["verdict"], "accept")

    def test_stream(self):
        events = list(client().responses.create(model="chat", input=QUESTION, max_output_tokens=16, stream=True))
        kinds = [e.type for e in events]
        self.assertEqual(kinds[0], "response.created", kinds)
        self.assertEqual(kinds[-1], "response.completed", kinds)
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        self.assertTrue(text.strip())
        self.assertEqual(events[-1].response.output_text, text)


if __name__ == "__main__":
    unittest.main()
