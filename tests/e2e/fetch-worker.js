// A same-origin worker that tries to reach another origin (the privacy test):
// the server's Content-Security-Policy header must block it.
fetch('https://example.com/from-worker').then(() => postMessage('sent'), () => postMessage('blocked'));
