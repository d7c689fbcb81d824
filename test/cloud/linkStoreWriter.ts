/**
 * The child of the link store's SIGKILL test: in round r it sets every link n with (n + r) % 3 === 0 to round r, waits
 * for flush() (the promise says it is on disk), and prints `flushed <r>`. Small compaction threshold, so the kill lands
 * in appends and in compactions alike. It never stops by itself: the test kills it with SIGKILL.
 *
 *   node --import tsx test/cloud/linkStoreWriter.ts <directory> <links>
 */
import { openLinkStore } from '../../src/cloud/linkStore.js';

const [directory, linksText] = process.argv.slice(2);
if (directory === undefined) throw new TypeError('usage: linkStoreWriter.ts <directory> <links>');
const links = Number(linksText ?? '300');
const store = await openLinkStore(directory, { writeDelayInMs: 0, compactAfterBytes: 20_000 });
// Some bulk per link, as a real snapshot has (a link's persisted form is about 400 bytes).
const padding = 'x'.repeat(200);
for (let round = 0; ; round += 1) {
  for (let n = 0; n < links; n += 1) {
    if ((n + round) % 3 === 0) store.set(`store-${n}`, { snapshot: { value: 'healthy', round, padding }, chart: { id: 'storeLink', hash: 'abc' }, enteredAtInMs: round });
  }
  await store.flush();
  process.stdout.write(`flushed ${round}\n`);
}
