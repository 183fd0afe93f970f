// The official OpenAI SDK for Node.js, unchanged, against the agent.
// Usage: node openai_client.cjs BASE_URL MODEL [API_KEY]  -> prints a JSON summary of what the
// SDK saw. Without a key it sends a placeholder, as users of local servers do.
const OpenAI = require("openai");

async function main() {
  const [baseURL, model, apiKey] = process.argv.slice(2);
  const client = new OpenAI({ baseURL, apiKey: apiKey || "not-needed-on-loopback", maxRetries: 0 });
  const messages = [{ role: "user", content: "hello world" }];
  const out = {};
  out.models = (await client.models.list()).data.map((m) => m.id);
  const completion = await client.chat.completions.create({
    model, messages, max_tokens: 12, temperature: 0,
  });
  out.content = completion.choices[0].message.content;
  out.finish_reason = completion.choices[0].finish_reason;
  out.usage = completion.usage;
  const stream = await client.chat.completions.create({
    model, messages, max_tokens: 12, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  out.streamed = "";
  for await (const chunk of stream) {
    if (chunk.choices.length) out.streamed += chunk.choices[0].delta.content ?? "";
    if (chunk.usage) out.stream_usage = chunk.usage;
  }
  try {
    await client.chat.completions.create({ model: "no-such-model", messages });
    out.error = "none";
  } catch (e) {
    out.error = { class: e.constructor.name, status: e.status, code: e.code, message: e.message };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
