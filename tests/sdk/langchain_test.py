"""LangChain's OpenAI integrations as real clients of tierwise: ChatOpenAI on the
Responses API (invoke, stream) and OpenAIEmbeddings, with the real SmolLM2 on
llama-server behind it.

Run by the Rust integration test `embeddings::langchain_clients_through_tierwise`.
"""
import os
import unittest

from langchain_openai import ChatOpenAI, OpenAIEmbeddings

BASE_URL = os.environ["TIERWISE_BASE_URL"]


class LangChain(unittest.TestCase):
    def chat(self):
        return ChatOpenAI(base_url=BASE_URL, api_key="not-needed", model="chat", use_responses_api=True,
                          max_tokens=16, max_retries=0, timeout=60)

    def test_chat_on_the_responses_api(self):
        message = self.chat().invoke("What is the capital of France? One word.")
        self.assertTrue(message.text.strip(), message)
        self.assertGreater(message.usage_metadata["output_tokens"], 0)

    def test_chat_stream_on_the_responses_api(self):
        chunks = list(self.chat().stream("Name a colour. One word."))
        text = "".join(c.text for c in chunks)
        self.assertTrue(text.strip(), chunks)

    def test_embeddings(self):
        # check_embedding_ctx_length=False sends text; LangChain's default sends token ids,
        # which tierwise treats as opaque (sensitive: embedded by local models only).
        embeddings = OpenAIEmbeddings(base_url=BASE_URL, api_key="not-needed", model="embed",
                                      check_embedding_ctx_length=False, max_retries=0)
        vectors = embeddings.embed_documents(["the cat sat", "tax law"])
        self.assertEqual(len(vectors), 2)
        self.assertEqual(len(vectors[0]), len(embeddings.embed_query("a dog")))


if __name__ == "__main__":
    unittest.main(verbosity=2)
