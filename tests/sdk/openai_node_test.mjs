// The official OpenAI Node SDK against tierwise, with node's own test runner.
// Run by `sdk::the_official_node_sdk_works_through_tierwise` (tests/it/sdk.rs), which
// starts tierwise with doubles behind it and sets TIERWISE_BASE_URL.
import assert from "node:assert/strict";
import { test } from "node:test";

import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.TIERWISE_BASE_URL, apiKey: "unused", maxRetries: 0 });
const ask = [{ role: "user", content: "Question?" }];

async function collect(stream) {
  let text = "";
  let usage = null;
  let finish = null;
  const calls = {};
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      finish = choice.finish_reason ?? finish;
      text += choice.delta.content ?? "";
      for (const call of choice.delta.tool_calls ?? []) {
        const entry = (calls[call.index] ??= { name: "", arguments: "" });
        if (call.function?.name) entry.name = call.function.name;
        entry.arguments += call.function?.arguments ?? "";
      }
    }
  }
  return { text, usage, finish, calls };
}

test("create through a task, with the trail in headers and body", async () => {
  const { data, response } = await client.chat.completions.create({ model: "chat", messages: ask }).withResponse();
  assert.equal(response.headers.get("x-tierwise-tier"), "local");
  assert.equal(data.choices[0].message.content, "A good answer.");
  assert.equal(data.tierwise.attempts[0].verdict, "accept");
});

test("a passed-through stream with include_usage", async () => {
  const stream = await client.chat.completions.create({
    model: "passthrough", messages: ask, stream: true, stream_options: { include_usage: true },
  });
  const { text, usage, finish } = await collect(stream);
  assert.equal(text, "Hello! How can I help you today?");
  assert.equal(finish, "stop");
  assert.equal(usage.total_tokens, 18);
});

test("a rejected local stream escalates; the client sees only the accepted one", async () => {
  const stream = await client.chat.completions.create({
    model: "verified", messages: ask, stream: true, stream_options: { include_usage: true },
  });
  const { text, usage } = await collect(stream);
  assert.equal(text, "Hello! How can I help you today?");
  assert.equal(usage.total_tokens, 18);
});

test("an accepted verified stream replays tool calls", async () => {
  const stream = await client.chat.completions.create({
    model: "tools", messages: ask, stream: true, stream_options: { include_usage: true },
    tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }],
  });
  const { calls, finish, usage } = await collect(stream);
  assert.deepEqual(calls, { 0: { name: "get_weather", arguments: '{"city":"Oslo"}' } });
  assert.equal(finish, "tool_calls");
  assert.equal(usage.total_tokens, 7);
});

test("models and errors", async () => {
  const ids = [];
  for await (const model of client.models.list()) ids.push(model.id);
  assert.ok(ids.includes("chat") && ids.includes("tools"));
  await assert.rejects(client.chat.completions.create({ model: "nope", messages: ask }), (err) => {
    assert.ok(err instanceof OpenAI.NotFoundError);
    assert.equal(err.code, "model_not_found");
    return true;
  });
});
