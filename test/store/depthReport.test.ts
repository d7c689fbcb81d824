import { describe, expect, it } from 'vitest';
import { depthToReport, outboxDepthOf } from '../../src/store/depthReport.js';
import { openOutbox } from '../../src/store/outbox.js';
import { T0, closing, outboxEvent, tempDir } from './harness.js';

describe('the outbox depth a store reports', () => {
  it('counts pending and parked entries but not the pending announcement, and reports only a change, never over a relay announcement', async () => {
    const outbox = closing(await openOutbox({ directory: await tempDir() }));
    expect(depthToReport(outbox, undefined)).toEqual({ pending: 0, parked: 0 });
    const events = [outboxEvent(), outboxEvent(), outboxEvent()];
    for (const event of events) await outbox.append(event);
    await outbox.park(events[0]!.id, { code: 'PAYLOAD_TOO_LARGE', message: 'too large for the inbox' });
    expect(outboxDepthOf(outbox)).toEqual({ pending: 2, parked: 1 });
    expect(depthToReport(outbox, { pending: 2, parked: 1 })).toBeUndefined();
    expect(depthToReport(outbox, { pending: 0, parked: 0 })).toEqual({ pending: 2, parked: 1 });

    // A relay announcement waits to be sent: a depth report now would replace it, so none is made.
    const relay = outboxEvent({ kind: 'announcement', type: 'store.announced', body: { relay: 'down', outbox: { pending: 2, parked: 1 } }, createdAt: new Date(T0 + 1_000).toISOString() });
    await outbox.append(relay);
    expect(outboxDepthOf(outbox)).toEqual({ pending: 2, parked: 1 });
    expect(depthToReport(outbox, { pending: 0, parked: 0 })).toBeUndefined();

    // Once it is sent, the next change is reported; a depth-only report still waiting may be replaced by a newer one.
    await outbox.acknowledge([relay.id, events[1]!.id]);
    expect(depthToReport(outbox, { pending: 2, parked: 1 })).toEqual({ pending: 1, parked: 1 });
    await outbox.append(outboxEvent({ kind: 'announcement', type: 'store.announced', body: { outbox: { pending: 1, parked: 1 } }, createdAt: new Date(T0 + 2_000).toISOString() }));
    expect(outboxDepthOf(outbox)).toEqual({ pending: 1, parked: 1 });
    await outbox.append(outboxEvent());
    expect(depthToReport(outbox, { pending: 1, parked: 1 })).toEqual({ pending: 2, parked: 1 });
  });
});
