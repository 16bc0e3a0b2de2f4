// A tiny static server for the page: serves the repo (minus dot-folders and
// build output other than the page's wasm package) and the demo model folder
// under /models/all-MiniLM-L6-v2/. Nothing else is reachable. Used by
// scripts/serve.sh and by the page tests (tests/e2e).

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.wasm': 'application/wasm', '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8', '.png': 'image/png', '.svg': 'image/svg+xml', '.safetensors': 'application/octet-stream',
};
const MODEL_PREFIX = '/models/all-MiniLM-L6-v2/';
/**
 * The Content-Security-Policy sent with every response: the policy of
 * index.html's <meta> tag, which a dedicated worker does not inherit (a
 * worker takes its policy from its own script's response), plus what only a
 * header can say (frame-ancestors). Nothing but this origin: no remote
 * script, style, font or connection.
 */
export const CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; style-src 'self'; img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'none'; frame-ancestors 'none'";

/**
 * @param {{root: string, modelDir?: string, port?: number, host?: string}} o
 * @returns {Promise<{server: http.Server, url: string}>}
 */
export function startServer({ root, modelDir, port = 0, host = '127.0.0.1' }) {
  const server = http.createServer((req, res) => {
    let p;
    try {
      p = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      res.writeHead(400).end('bad path');
      return;
    }
    let file;
    if (p.startsWith(MODEL_PREFIX) && modelDir) file = safeJoin(modelDir, p.slice(MODEL_PREFIX.length));
    else if (p.split('/').some((s) => s.startsWith('.') || s === 'target')) file = null;
    else file = safeJoin(root, p === '/' ? 'index.html' : p.slice(1));
    if (!file) { res.writeHead(404).end('not found'); return; }
    fs.stat(file, (err, st) => {
      if (err || !st.isFile()) { res.writeHead(404, { 'content-type': 'text/plain' }).end('not found'); return; }
      res.writeHead(200, {
        'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
        'content-length': st.size,
        'cache-control': 'no-cache',
        'content-security-policy': CSP,
        'x-content-type-options': 'nosniff',
      });
      if (req.method === 'HEAD') { res.end(); return; }
      fs.createReadStream(file).pipe(res);
    });
  });
  return new Promise((resolve) => server.listen(port, host, () => {
    const a = /** @type {import('node:net').AddressInfo} */ (server.address());
    resolve({ server, url: `http://${host}:${a.port}/` });
  }));
}

/** @param {string} base @param {string} rel */
function safeJoin(base, rel) {
  const full = path.resolve(base, rel);
  return full === base || full.startsWith(base + path.sep) ? full : null;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [root, modelDir, port] = process.argv.slice(2);
  const { url } = await startServer({ root: path.resolve(root), modelDir: modelDir ? path.resolve(modelDir) : undefined, port: Number(port ?? 8000) });
  console.log(`jlcm page: ${url}?demo   (Ctrl-C to stop)`);
}
