// Serve a directory, open its index.html in headless Chromium through
// chromedriver (WebDriver), wait for window.benchResult and print it.
//   node drive-chromium.mjs DIR QUICK [ROWSxCOLS]
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { spawn, execSync } from "node:child_process";
import { join, extname } from "node:path";

const [dir, quick = "false", matrix = ""] = process.argv.slice(2);
const types = { ".json": "application/json", ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };
const server = createServer(async (req, res) => {
  try {
    const path = join(dir, new URL(req.url, "http://x").pathname.replace(/\/$/, "/index.html"));
    const body = await readFile(path);
    res.writeHead(200, { "content-type": types[extname(path)] ?? "application/octet-stream" });
    res.end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const page = `http://127.0.0.1:${server.address().port}/index.html?quick=${quick}&matrix=${matrix}`;

const port = 9600 + Math.floor(Math.random() * 300);
const driver = spawn("chromedriver", [`--port=${port}`], { stdio: "ignore" });
const wd = async (method, path, body) => {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body && JSON.stringify(body),
  });
  const j = await r.json();
  if (j.value && j.value.error) throw new Error(`${j.value.error}: ${j.value.message}`);
  return j.value;
};
let session;
try {
  for (let i = 0; ; i++) {
    try { await wd("GET", "/status"); break; } catch (e) { if (i > 50) throw e; await new Promise((r) => setTimeout(r, 100)); }
  }
  const binary = execSync("which chromium").toString().trim();
  session = (await wd("POST", "/session", {
    capabilities: { alwaysMatch: { "goog:chromeOptions": { binary, args: ["--headless=new", "--no-sandbox", "--disable-gpu"] } } },
  })).sessionId;
  await wd("POST", `/session/${session}/url`, { url: page });
  const deadline = Date.now() + 20 * 60 * 1000;
  for (;;) {
    const v = await wd("POST", `/session/${session}/execute/sync`, {
      script: "return [window.benchResult ?? null, window.benchError ?? null, navigator.userAgent]",
      args: [],
    });
    if (v[1]) throw new Error(v[1]);
    if (v[0]) { process.stdout.write(`${v[2]}\n\n${v[0]}`); break; }
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 1000));
  }
} finally {
  if (session) await wd("DELETE", `/session/${session}`).catch(() => {});
  driver.kill();
  server.close();
}
