"""The official OpenAI Python SDK's Responses API against a running tierwise, with the
real SmolLM2 on llama-server behind it (tierwise translates to chat completions).

Run by the Rust integration test `responses::the_python_sdk_responses_api_through_tierwise`,
which starts llama-server and tierwise and sets TIERWISE_BASE_URL.
"""
import os
import unittest

import openai

BASE_URL = os.environ["TIERWISE_BASE_URL"]


def client() -> openai.OpenAI:
    return openai.OpenAI(base_url=BASE_URL, api_key="not-needed", max_retries=0, timeout=60)


QUESTION = "What is the capital of France? Answer in one word."


class ResponsesAPI(unittest.TestCase):
    def test_create(self):
        response = client().responses.create(model="chat", input=QUESTION, max_output_tokens=16)
        self.assertEqual(response.object, "response")
        self.assertEqual(response.status, "completed")
        self.assertTrue(response.id.startswith("resp_"), response.id)
        self.assertTrue(response.output_text.strip(), response)
        self.assertEqual(response.output[0].type, "message")
        self.assertEqual(response.output[0].content[0].type, "output_text")
        self.assertGreater(response.usage.output_tokens, 0)
        self.assertEqual(response.usage.total_tokens, response.usage.input_tokens + response.usage.output_tokens)
        self.assertEqual(response.max_output_tokens, 16)
        self.assertEqual(response.model_extra["tierwise"]["tier"], "local")

    def test_instructions_and_input_items(self):
        raw = client().responses.with_raw_response.create(
            model="chat",
            instructions="You answer in one word.",
            input=[
                {"role": "user", "content": [{"type": "input_text", "text": "Capital of Italy?"}]},
                {"role": "assistant", "content": "Rome."},
                {"role": "user", "content": QUESTION},
            ],
            max_output_tokens=16,
            temperature=0,
        )
        self.assertEqual(raw.headers["x-tierwise-tier"], "local")
        response = raw.parse()
        self.assertEqual(response.instructions, "You answer in one word.")
        self.assertTrue(response.output_text.strip())

    def test_stream(self):
        stream = client().responses.create(model="chat", input=QUESTION, max_output_tokens=16, stream=True)
        events = list(stream)
        kinds = [e.type for e in events]
        self.assertEqual(kinds[:2], ["response.created", "response.in_progress"], kinds)
        self.assertEqual(kinds[-1], "response.completed", kinds)
        self.assertIn("response.output_text.delta", kinds)
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        completed = events[-1].response
        self.assertEqual(completed.output_text, text)
        self.assertGreater(completed.usage.output_tokens, 0)
        self.assertEqual([e.sequence_number for e in events], list(range(len(events))))

    def test_stream_helper_assembles_the_final_response(self):
        with client().responses.stream(model="chat", input=QUESTION, max_output_tokens=16) as stream:
            deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
            final = stream.get_final_response()
        self.assertEqual(final.output_text, "".join(deltas))
        self.assertEqual(final.status, "completed")

    def test_a_stored_conversation_is_refused_by_name(self):
        with self.assertRaises(openai.BadRequestError) as caught:
            client().responses.create(model="chat", input=QUESTION, previous_response_id="resp_earlier")
        self.assertEqual(caught.exception.body["param"], "previous_response_id")
        self.assertIn("send the whole conversation", caught.exception.body["message"])

    def test_built_in_tools_are_refused(self):
        with self.assertRaises(openai.BadRequestError) as caught:
            client().responses.create(model="chat", input=QUESTION, tools=[{"type": "web_search"}])
        self.assertEqual(caught.exception.body["param"], "tools[0].type")

    def test_an_unknown_model_is_the_sdks_not_found_error(self):
        with self.assertRaises(openai.NotFoundError):
            client().responses.create(model="no-such-task", input=QUESTION)


if __name__ == "__main__":
    unittest.main(verbosity=2)
