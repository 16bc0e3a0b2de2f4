// A same-origin worker that tries to reach another origin (the privacy test):
// the server's Content-Security-Policy header must block it, and the worker
// sees the violation itself (a worker takes its policy from its script's
// response, not from the page).
let violated = null;
self.addEventListener('securitypolicyviolation', (e) => { violated = e.violatedDirective; });
fetch('https://example.com/from-worker').then(() => postMessage('sent'), () => setTimeout(() => postMessage(violated ? `blocked (${violated})` : 'failed without a policy violation'), 50));
