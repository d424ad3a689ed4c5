"""The privacy invariant through the official OpenAI Python SDK, streaming.

Run by `sdk::the_privacy_backstop_holds_through_the_python_sdk`, which starts a local
double that fails, a cloud double that answers, and tierwise; it sets TIERWISE_BASE_URL
and afterwards checks that the cloud double received only the normal requests.
"""
import os
import unittest

import openai

client = openai.OpenAI(base_url=os.environ["TIERWISE_BASE_URL"], api_key="unused", max_retries=0, timeout=30)


def stream_text(**kwargs):
    stream = client.chat.completions.create(model="chat", stream=True, **kwargs)
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


class PrivacyThroughTheSDK(unittest.TestCase):
    def test_sensitive_streams_never_go_to_cloud(self):
        for content in [
            "Forward this to maria.rossi@example.it please",
            "Transfer to IBAN DE89 3704 0044 0532 0130 00",
        ]:
            with self.assertRaises(openai.APIStatusError) as caught:
                stream_text(messages=[{"role": "user", "content": content}])
            self.assertEqual(caught.exception.status_code, 502)
            self.assertIn("cloud (gpt):", caught.exception.message)
            self.assertIn("sensitive", caught.exception.message)

    def test_tools_and_an_image_part_are_read_too(self):
        tools = [{"type": "function", "function": {
            "name": "notify", "description": "Sends the summary to giulia.bianchi@example.it",
            "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}}}]
        with self.assertRaises(openai.APIStatusError) as caught:
            stream_text(messages=[{"role": "user", "content": "Summarise the meeting."}], tools=tools)
        self.assertIn("tools[0].function.description", caught.exception.message)
        png = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg==")
        image = [{"type": "text", "text": "What is in this picture?"},
                 {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]
        with self.assertRaises(openai.APIStatusError) as caught:
            stream_text(messages=[{"role": "user", "content": image}])
        self.assertIn("opaque payload", caught.exception.message)

    def test_a_stated_class_is_honoured(self):
        with self.assertRaises(openai.APIStatusError):
            stream_text(messages=[{"role": "user", "content": "nothing to see"}],
                        extra_headers={"x-tierwise-content-class": "sensitive"})
        with self.assertRaises(openai.APIStatusError):
            stream_text(messages=[{"role": "user", "content": "nothing to see"}],
                        metadata={"content_class": "sensitive"})

    def test_normal_content_streams_from_cloud(self):
        text = stream_text(messages=[{"role": "user", "content": "Say hello."}],
                           stream_options={"include_usage": True})
        self.assertEqual(text, "Hello! How can I help you today?")


if __name__ == "__main__":
    unittest.main(verbosity=2)
