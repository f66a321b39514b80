// Measures the web view for scripts/bench-web.sh: signs in with the link
// in argv[2], opens the page (viewport argv[3]xargv[4]), and for argv[5]
// seconds records, for the tile of the session argv[6] (which prints
// "T <unix ms>" lines), how long from the print to the tile showing it.
// Prints one JSON line: { samples, p50, p99, max, tilesOnView }.
import { chromium } from "playwright-core";

const [login, width, height, seconds, probe] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await (await browser.newContext({ viewport: { width: +width, height: +height } })).newPage();
await page.goto(login);
await page.waitForSelector(`.tile[data-id="${probe}"] .row`, { timeout: 30000 });
await page.evaluate((id) => {
  window.lags = [];
  const el = document.querySelector(`.tile[data-id="${id}"] .screen`);
  // What is on screen already is not a sample.
  let last = Math.max(0, ...[...el.textContent.matchAll(/T (\d{13})/g)].map((m) => +m[1]));
  new MutationObserver(() => {
    const now = Date.now();
    const marks = [...el.textContent.matchAll(/T (\d{13})/g)].map((m) => +m[1]);
    for (const t of marks) if (t > last) { window.lags.push(now - t); last = t; }
  }).observe(el, { childList: true, subtree: true, characterData: true });
}, probe);
await page.waitForTimeout(+seconds * 1000);
const lags = (await page.evaluate(() => window.lags)).sort((a, b) => a - b);
const at = (q) => lags[Math.min(lags.length - 1, Math.floor(q * lags.length))];
const tilesOnView = await page.evaluate(() => [...document.querySelectorAll(".tile")].filter((t) => {
  const r = t.getBoundingClientRect();
  return r.bottom > 0 && r.top < innerHeight;
}).length);
await browser.close();
console.log(JSON.stringify({ samples: lags.length, p50: at(0.5), p99: at(0.99), max: lags[lags.length - 1], tilesOnView }));
