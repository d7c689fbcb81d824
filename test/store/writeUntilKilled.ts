/**
 * The child of the SIGKILL test: records ledger entries or appends outbox events in a loop, a few at a time, and
 * prints each id on its own line once its promise has resolved (the promise says it is on disk). It never stops by
 * itself: the test kills it with SIGKILL.
 *
 *   node --import tsx test/store/writeUntilKilled.ts ledger|outbox <directory> <segmentSize>
 */
import { randomUUID } from 'node:crypto';
import { openLedger } from '../../src/store/ledger.js';
import { openOutbox } from '../../src/store/outbox.js';

const [mode, directory, segmentSizeText] = process.argv.slice(2);
if ((mode !== 'ledger' && mode !== 'outbox') || directory === undefined) {
  throw new TypeError('usage: writeUntilKilled.ts ledger|outbox <directory> <segmentSize>');
}
const segmentSize = Number(segmentSizeText ?? '1000');
const IN_FLIGHT = 8;
const farFuture = new Date(Date.now() + 365 * 24 * 60 * 60 * 1000).toISOString();

let write: (sequence: number) => Promise<string>;
if (mode === 'ledger') {
  const ledger = await openLedger({ directory, segmentSize });
  write = async (sequence) => {
    const entry = await ledger.record({
      id: randomUUID(),
      storeId: 'store-042',
      type: 'clickAndCollect.order',
      outcome: 'done',
      result: { sequence },
      channel: 'queue',
      executedAt: new Date().toISOString(),
      expiresAt: farFuture,
    });
    return entry.id;
  };
} else {
  const outbox = await openOutbox({ directory, segmentSize });
  write = async (sequence) => {
    const id = randomUUID();
    await outbox.append({ id, kind: 'event', type: 'sale.recorded', storeId: 'store-042', body: { sequence }, createdAt: new Date().toISOString() });
    return id;
  };
}

let next = 0;
async function worker(): Promise<void> {
  for (;;) {
    const id = await write(next++);
    // stdout to a pipe is a synchronous write on Linux: a line is out before the next await, never half-printed.
    process.stdout.write(`${id}\n`);
  }
}
await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
