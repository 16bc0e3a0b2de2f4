// Serve the bundled consumer app and open it in Debian's Chromium through
// playwright-core; wait for the page and worker results; fail on any request
// that leaves the origin; with an expected SHA-256, check the packed bytes
// are the same as Node's. Usage: node browser.mjs <dir> [sha256]
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { execSync } from "node:child_process";
import { extname, join, normalize } from "node:path";
import { chromium } from "playwright-core";

const root = process.argv[2];
const expectedSha = process.argv[3];
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };
const server = createServer(async (req, res) => {
  const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^(\.\.[/\\])+/, "");
  if (path === "/favicon.ico") return res.writeHead(204).end();
  try {
    const body = await readFile(join(root, path === "/" ? "index.html" : path));
    res.writeHead(200, { "content-type": types[extname(path)] || "application/octet-stream" }).end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const origin = `http://127.0.0.1:${server.address().port}`;
const executablePath = execSync("which chromium").toString().trim();
const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let failed = false;
try {
  const page = await browser.newPage();
  const foreign = [];
  page.on("request", (r) => { if (!r.url().startsWith(origin)) foreign.push(r.url()); });
  page.on("console", (m) => console.error("page:", m.text()));
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(origin + "/index.html");
  await page.waitForFunction(() => window.__results && window.__results.page && window.__results.worker, null, { timeout: 60000 });
  const results = await page.evaluate(() => window.__results);
  console.log(JSON.stringify(results));
  if (!results.page.ok || !results.worker.ok) failed = true;
  // jlcm/text ran in both, and the page fetched it only when used.
  if (!results.page.text || !results.worker.text) { console.error("jlcm/text did not run"); failed = true; }
  if (results.page.text && !results.page.text.lazy) { console.error("jlcm/text was not a chunk of its own, fetched on first use"); failed = true; }
  for (const key of ["page", "worker"]) {
    if (expectedSha && results[key].sha256 !== expectedSha) {
      console.error(`${key}: packed bytes differ from Node's (${results[key].sha256} vs ${expectedSha})`);
      failed = true;
    }
  }
  if (foreign.length) { console.error("requests left the origin:", foreign); failed = true; }
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
