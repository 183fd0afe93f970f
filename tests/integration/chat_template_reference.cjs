// Renders conversations with a model's real Jinja chat template, through Hugging Face's
// @huggingface/jinja (the engine transformers.js uses).
// Usage: node chat_template_reference.cjs TOKENIZER_CONFIG.json CONVERSATIONS.json [TEMPLATE_FILE]
const { readFileSync } = require("node:fs");
const { Template } = require("@huggingface/jinja");

const [configPath, conversationsPath, templatePath] = process.argv.slice(2);
const config = JSON.parse(readFileSync(configPath, "utf8"));
const source = templatePath ? readFileSync(templatePath, "utf8") : config.chat_template;
const token = (t) => (t && typeof t === "object" ? t.content : t) ?? "";
const template = new Template(source);
const out = JSON.parse(readFileSync(conversationsPath, "utf8")).map((messages) =>
  template.render({
    messages,
    add_generation_prompt: true,
    bos_token: token(config.bos_token),
    eos_token: token(config.eos_token),
    date_string: "26 Jul 2024",
  }),
);
process.stdout.write(JSON.stringify(out) + "\n");
