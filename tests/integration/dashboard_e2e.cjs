// Drives the fleet dashboard in Debian's headless Chromium (playwright-core), on a laptop-sized
// and a phone-sized viewport, and saves a screenshot of every view. Prints one JSON line of
// what it saw; test_fleet_dashboard.py checks it and the screenshots.
//   FLEET_URL=... FLEET_TOKEN=... SHOTS=dir node dashboard_e2e.cjs
const { chromium } = require("playwright-core");

const url = process.env.FLEET_URL, token = process.env.FLEET_TOKEN, shots = process.env.SHOTS;
const views = ["Overview", "Devices", "Deployments", "Alerts", "Audit"];

async function visit(browser, name, viewport, extra) {
  const context = await browser.newContext({ viewport, ...extra });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // The wrong token's 401s are expected; any other console error is not.
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 401/.test(m.text())) errors.push(m.text());
  });
  const seen = { errors };
  await page.goto(url + "/");
  // A wrong token is refused and the sign-in form comes back with the reason.
  await page.fill("#tok", "opt_wrong");
  await page.click("button[type=submit]");
  await page.waitForFunction(() => document.getElementById("error").textContent.length > 0);
  await page.waitForSelector("#tok");
  seen.refused = await page.textContent("#error");
  await page.fill("#tok", token);
  await page.click("button[type=submit]");
  for (const view of views) {
    await page.click(`nav button[data-tab=${view}]`);
    await page.waitForFunction((v) => document.body.dataset.loaded === v, view);
    const text = await page.innerText("main");
    seen[view] = text;
    seen[view + "_overflow"] = await page.evaluate(
      () => document.documentElement.scrollWidth - window.innerWidth);
    await page.screenshot({ path: `${shots}/${name}-${view.toLowerCase()}.png`, fullPage: true });
  }
  // Rollout controls: the laptop pauses the running rollout, the phone resumes it.
  page.on("dialog", (d) => d.accept());
  await page.click("nav button[data-tab=Deployments]");
  const action = name === "laptop" ? "pause" : "resume";
  await page.click(`button.act[data-action=${action}]`);
  await page.waitForFunction((s) => document.querySelector("main").innerText.includes(s),
                             name === "laptop" ? "paused" : "running");
  seen.afterAction = await page.innerText("main");
  seen.theadVisible = await page.evaluate(() => {
    const th = document.querySelector("thead");
    return th ? getComputedStyle(th).display !== "none" : null;
  });
  await context.close();
  return seen;
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const laptop = await visit(browser, "laptop", { width: 1280, height: 800 }, {});
    const phone = await visit(browser, "phone", { width: 390, height: 844 },
                              { isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    console.log(JSON.stringify({ laptop, phone }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
