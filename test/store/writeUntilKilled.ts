/**
 * The child of the SIGKILL test: records ledger entries or appends outbox events in a loop, a few at a time, and
 * prints `recorded <id>` / `appended <id>` once the promise has resolved (the promise says it is on disk). In outbox
 * mode it also acknowledges the oldest events as a flush would, printing `acknowledging <id>` before the call and
 * `acknowledged <id>` once it resolved. It
 * never stops by itself: the test kills it with SIGKILL.
 *
 *   node --import tsx test/store/writeUntilKilled.ts ledger|outbox <directory> <segmentSize> [fsync: true|false]
 */
import { randomUUID } from 'node:crypto';
import { openLedger } from '../../src/store/ledger.js';
import { openOutbox } from '../../src/store/outbox.js';

const [mode, directory, segmentSizeText, fsyncText] = process.argv.slice(2);
if ((mode !== 'ledger' && mode !== 'outbox') || directory === undefined) {
  throw new TypeError('usage: writeUntilKilled.ts ledger|outbox <directory> <segmentSize>');
}
const segmentSize = Number(segmentSizeText ?? '1000');
const IN_FLIGHT = 8;
const farFuture = new Date(Date.now() + 365 * 24 * 60 * 60 * 1000).toISOString();

let write: (sequence: number) => Promise<string>;
let acknowledgeOldest: (() => Promise<void>) | undefined;
if (mode === 'ledger') {
  const ledger = await openLedger({ directory, segmentSize, fsync: fsyncText === 'true' });
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
    return `recorded ${entry.id}`;
  };
} else {
  const outbox = await openOutbox({ directory, segmentSize });
  write = async (sequence) => {
    const id = randomUUID();
    await outbox.append({ id, kind: 'event', type: 'sale.recorded', storeId: 'store-042', body: { sequence }, createdAt: new Date().toISOString() });
    return `appended ${id}`;
  };
  acknowledgeOldest = async () => {
    // Like a flush: only the oldest, and leaving a backlog so that something is left to bring back after the kill.
    if (outbox.size < 100) return;
    const ids = outbox.peek(20).map((event) => event.id);
    // Said before the call: a kill while it runs may or may not have removed them, and the test allows either.
    for (const id of ids) process.stdout.write(`acknowledging ${id}\n`);
    await outbox.acknowledge(ids);
    for (const id of ids) process.stdout.write(`acknowledged ${id}\n`);
  };
}

let next = 0;
let acknowledging = false;
async function worker(): Promise<void> {
  for (;;) {
    const line = await write(next++);
    // stdout to a pipe is a synchronous write on Linux: a line is out before the next await, never half-printed.
    process.stdout.write(`${line}\n`);
    if (acknowledgeOldest !== undefined && !acknowledging) {
      acknowledging = true;
      void acknowledgeOldest().finally(() => (acknowledging = false));
    }
  }
}
await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
