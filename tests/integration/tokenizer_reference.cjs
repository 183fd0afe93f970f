// Reference token ids from Hugging Face's tokenizers.js: for each string of a JSON array,
// {ids, decoded}. Usage: node tokenizer_reference.cjs DIR STRINGS.json [add_special:0|1]
const { readFileSync } = require("node:fs");
const { Tokenizer } = require("@huggingface/tokenizers");

const [dir, batch, special] = process.argv.slice(2);
const tokenizer = new Tokenizer(
  JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8")),
  JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8")),
);
const out = JSON.parse(readFileSync(batch, "utf8")).map((text) => {
  const ids = tokenizer.encode(text, { add_special_tokens: special === "1" }).ids;
  // tokenizers.js refuses to decode an empty list.
  return { ids, decoded: ids.length ? tokenizer.decode(ids, { skip_special_tokens: true }) : "" };
});
process.stdout.write(JSON.stringify(out) + "\n");
