// A web page attacks the local agent from Debian's headless Chromium (playwright-core): from
// another origin with no-cors requests (which need no preflight and whose answers the page
// cannot read), and from a DNS-rebinding-style origin whose name resolves to 127.0.0.1 on the
// agent's own port (same-origin to the browser, so it can read every answer). Prints one JSON
// line of what the rebinding page saw; browser_test in test_http.py checks it and the agent.
//   AGENT_PORT=... node browser_attack.cjs
const { chromium } = require("playwright-core");

const port = process.env.AGENT_PORT;
const attacks = [
  ["PUT", "/v2/logging", '{"level": "trace"}'],
  ["POST", "/v2/updates/check?force=true", ""],
  ["POST", "/v2/repository/packages", "not a package"],
  ["POST", "/v2/models/add_mul/infer",
   '{"inputs":[{"name":"a","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]},' +
   '{"name":"b","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}'],
  ["POST", "/v1/chat/completions", '{"model":"m","messages":[{"role":"user","content":"hi"}]}'],
];

// Runs `script` in a page at `pageUrl`; with `fulfill`, the page itself comes from here (the
// attacker's server), else from wherever the name resolves. Returns the script's result and the
// page's own status.
async function fromPage(browser, pageUrl, fulfill, script, arg) {
  const page = await browser.newPage();
  if (fulfill) {
    await page.route(pageUrl, (route) =>
      route.fulfill({ contentType: "text/html", body: "<html><body>hello</body></html>" }));
  }
  const loaded = await page.goto(pageUrl);
  const out = await page.evaluate(script, arg);
  await page.close();
  return { out, status: loaded.status() };
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync",
           "--host-resolver-rules=MAP evil.test 127.0.0.1, MAP rebind.test 127.0.0.1"],
  });
  try {
    // 1. Another origin: text/plain and typeless no-cors requests, as a form post would send.
    const cross = await fromPage(browser, "http://evil.test/attack.html", true,
                                 async ({ port, attacks }) => {
      const sent = [];
      for (const [method, path, body] of attacks) {
        for (const headers of [{ "Content-Type": "text/plain" }, {}]) {
          try {
            await fetch(`http://127.0.0.1:${port}${path}`,
                        { method, mode: "no-cors", headers, body: body || undefined });
            sent.push(path);
          } catch (e) {
            sent.push(`${path}: ${e}`);
          }
        }
      }
      return sent;
    }, { port, attacks });
    // 2. Rebinding: the page's origin is the agent's own host:port under another name, once the
    // name resolves to 127.0.0.1 (the document is the agent's answer; a page loaded from a public
    // address would meet Chromium's local-network checks first, which other browsers lack).
    const rebound = await fromPage(browser, `http://rebind.test:${port}/v2/health/live`, false,
                                   async ({ attacks }) => {
      const seen = {};
      for (const [method, path, body] of attacks) {
        const r = await fetch(path, { method, headers: { "Content-Type": "application/json" },
                                      body: body || undefined });
        seen[`${method} ${path}`] = r.status;
      }
      for (const path of ["/v2/models/add_mul", "/v2/logging", "/metrics", "/v2/repository/index"]) {
        seen[`GET ${path}`] = (await fetch(path)).status;
      }
      return seen;
    }, { attacks });
    console.log(JSON.stringify({ cross: cross.out, rebound: rebound.out,
                                 rebound_page: rebound.status }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
