// The worker's side of in-page calibration (protocol.js `calibrate`): run the
// model on the user's sentences through the package API and send back the
// H file (safetensors bytes, transferred).

import { MSG } from './protocol.js';
import { calibrateSentences } from './engine.js';

/**
 * @param {import('./protocol.js').CalibrateMsg} msg
 * @param {(m: import('./protocol.js').FromWorker, transfer?: Transferable[]) => void} post
 */
export async function calibrate(msg, post) {
  const m = msg.model;
  const bytes = async (/** @type {Blob} */ b) => new Uint8Array(await b.arrayBuffer());
  const r = await calibrateSentences(`${m.key}:original`,
    async () => ({ config: m.config, tokenizer: await bytes(m.tokenizer), weights: await bytes(m.weights) }),
    msg.sentences, msg.batchSize,
    (p) => post({ type: MSG.progress, id: msg.id, event: { type: 'calibration', done: p.done, total: p.total } }));
  post({ type: MSG.calibrated, id: msg.id, bytes: r.bytes, ms: r.ms }, [r.bytes.buffer]);
}
