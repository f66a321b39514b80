// Drives Debian's Chromium (headless, through playwright-core) against the
// daemon's web view, for tests/web.rs. Input, as JSON in COVEN_WEB_TEST:
//   { base, login, login2, ticker, cat, screenshot }
// base: the view's URL; login, login2: two fresh sign-in links; ticker: a
// session that prints a new line often; cat: a `cat` session; screenshot:
// where to save a PNG of the page. It prints what it saw as one JSON line;
// the Rust test judges it (and checks the daemon's side).
import http from "node:http";
import { chromium } from "playwright-core";

const input = JSON.parse(process.env.COVEN_WEB_TEST);
const seen = {};
const deadline = 20000 * Number(process.env.COVEN_TEST_TIME_SCALE || 1);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();

  // Without the cookie: refused.
  let r = await page.goto(input.base);
  seen.withoutCookie = r.status();

  // The sign-in link: a cookie and the page; the code is dead after.
  r = await page.goto(input.login);
  seen.loginStatus = r.status();
  seen.afterLogin = page.url();
  const cookies = await context.cookies();
  seen.cookie = cookies.map((c) => ({ name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite }));
  const again = await context.newPage();
  seen.loginAgain = (await again.goto(input.login)).status();
  await again.close();

  // Every running session gets a tile whose rows are its screen's.
  await page.waitForFunction(
    (ids) => ids.every((id) => document.querySelector(`.tile[data-id="${id}"] .screen .row`)),
    [input.ticker, input.cat], { timeout: deadline });
  seen.tiles = await page.$$eval(".tile", (ts) => ts.map((t) => ({
    id: t.dataset.id,
    title: t.querySelector(".title").textContent,
    state: t.querySelector(".state").textContent,
    rows: [...t.querySelectorAll(".screen .row")].map((r) => r.textContent),
  })));

  // Output printed later shows in its tile.
  const before = seen.tiles.find((t) => t.id === input.ticker).rows.join("\n");
  await page.waitForFunction(
    ([id, text]) => {
      const rows = [...document.querySelectorAll(`.tile[data-id="${id}"] .screen .row`)];
      return rows.map((r) => r.textContent).join("\n") !== text;
    },
    [input.ticker, before], { timeout: deadline });
  seen.tickerChanged = true;

  // The screenshot, with several sessions on it.
  await page.waitForTimeout(300);
  await page.screenshot({ path: input.screenshot });

  // The full view: what is typed reaches the session, which echoes it.
  await page.click(`.tile[data-id="${input.cat}"]`);
  await page.waitForSelector("#full:not([hidden])");
  await page.focus("#full-screen");
  await page.keyboard.type("typed in the browser");
  await page.keyboard.press("Enter");
  await page.waitForFunction(
    () => document.querySelector("#full-screen").textContent.includes("typed in the browser"),
    null, { timeout: deadline });
  seen.fullText = await page.$eval("#full-screen", (e) => [...e.querySelectorAll(".row")].map((r) => r.textContent));
  seen.fullSize = await page.evaluate(async (id) => {
    const r = await fetch(`/api/v1/sessions/${id}/screen`);
    const s = await r.json();
    return { cols: s.cols, rows: s.rows };
  }, input.cat);
  await page.keyboard.press("Control+]");
  seen.fullClosed = await page.$eval("#full", (e) => e.hidden);

  // Another origin: a page on a second loopback port the test serves, in
  // the same browser (which holds the cookie). It tries to read the
  // sessions, to read a screen without CORS, and to kill the cat session
  // with a form post.
  const evil = http.createServer((req, res) => {
    res.setHeader("Content-Type", "text/html");
    res.end(`<!doctype html><body>
<form id="f" method="POST" action="${input.base}api/v1/sessions/${input.cat}/kill" enctype="text/plain">
<input name='{"signal":"KILL","x":"' value='"}'></form>
<script>
window.results = {};
async function go() {
  try { const r = await fetch("${input.base}api/v1/sessions"); window.results.read = "read " + r.status + " " + (await r.text()).length; }
  catch (e) { window.results.read = "failed: " + e.name; }
  try { const r = await fetch("${input.base}api/v1/sessions/${input.cat}/kill", { method: "POST", body: "{}", headers: { "Content-Type": "application/json" } }); window.results.fetchPost = "answered " + r.status; }
  catch (e) { window.results.fetchPost = "failed: " + e.name; }
  try { const r = await fetch("${input.base}api/v1/sessions", { mode: "no-cors" }); window.results.opaque = r.type + " " + r.status + " " + (await r.text()).length; }
  catch (e) { window.results.opaque = "failed: " + e.name; }
  try { const s = new EventSource("${input.base}api/v1/screens/stream?ids=${input.cat}");
        await new Promise((ok) => { s.onerror = () => { window.results.stream = "error"; s.close(); ok(); };
                                    s.onmessage = s.onopen = () => { window.results.stream = "opened"; s.close(); ok(); }; }); }
  catch (e) { window.results.stream = "failed: " + e.name; }
  window.results.done = true;
}
go();
</script></body>`);
  });
  await new Promise((ok) => evil.listen(0, "127.0.0.1", ok));
  const evilPage = await context.newPage();
  await evilPage.goto(`http://127.0.0.1:${evil.address().port}/`);
  await evilPage.waitForFunction(() => window.results && window.results.done,
    null, { timeout: deadline });
  seen.evil = await evilPage.evaluate(() => window.results);
  // The form post (a JSON body smuggled in text/plain), as a navigation:
  // the daemon's answer is then the page shown.
  const [answer] = await Promise.all([
    evilPage.waitForNavigation({ timeout: deadline }),
    evilPage.evaluate(() => document.getElementById("f").submit()),
  ]);
  seen.formStatus = answer ? answer.status() : null;
  seen.formBody = await evilPage.evaluate(() => document.body.textContent);
  evil.close();
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(seen) + "\n");
