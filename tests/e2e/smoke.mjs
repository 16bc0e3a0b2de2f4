import { openBrowser, shot } from './harness.mjs';
const b = await openBrowser();
await b.page.goto(b.url + '?demo');
await b.page.waitForSelector('#tensor-table tbody tr', { timeout: 30000 });
await b.page.waitForSelector('#value-histogram .uplot', { timeout: 30000 });
await shot(b.page, 'smoke');
console.log(await b.page.textContent('#engine-status'));
console.log(b.errors, b.foreignRequests());
await b.close();
