import { describe, expect, it } from 'vitest';
import type { QueueDelivery } from '../../src/channels/servicebus/serviceBusConnection.js';
import { createInboxHandler, type InboxParts } from '../../src/cloud/inbox.js';
import type { ReplyCache } from '../../src/cloud/replyCache.js';
import type { ReplyWaiting } from '../../src/cloud/replyWaiting.js';
import type { StoreLinks } from '../../src/cloud/storeLinks.js';
import { silentLogger } from '../../src/core/logger.js';

const AT = '2031-03-04T05:06:07.000Z';

function inbox() {
  const sent: unknown[] = [];
  const depths: unknown[] = [];
  const links = { send: (storeId: string, event: unknown) => sent.push({ storeId, event }), enteredAt: () => Date.parse(AT) - 1_000 } as unknown as StoreLinks;
  const parts: InboxParts = {
    isKnownStore: () => true,
    verify: () => ({ valid: true, keyId: 'k' }),
    storeOfOperation: () => undefined,
    onRejected: () => undefined,
    replies: {} as ReplyWaiting,
    cache: {} as ReplyCache,
    links,
    onEvent: () => undefined,
    onReply: () => undefined,
    onOutboxDepth: (report) => depths.push(report),
    logger: silentLogger,
  };
  const handle = createInboxHandler(parts);
  const announce = async (body: unknown): Promise<string> => {
    let result = '';
    const delivery = {
      message: { body: { id: 'm-1', kind: 'announcement', type: 'store.announced', storeId: 'paris-1', body, createdAt: AT } },
      complete: () => Promise.resolve(void (result = 'completed')),
      abandon: () => Promise.resolve(void (result = 'abandoned')),
      deadLetter: ({ reason }: { reason: string }) => Promise.resolve(void (result = `dead-lettered ${reason}`)),
    } as unknown as QueueDelivery;
    await handle(delivery);
    return result;
  };
  return { announce, sent, depths };
}

describe('announcements carrying an outbox depth', () => {
  it('records a depth-only announcement without telling the link chart anything', async () => {
    const { announce, sent, depths } = inbox();
    expect(await announce({ outbox: { pending: 4, parked: 1 } })).toBe('completed');
    expect(depths).toEqual([{ storeId: 'paris-1', depth: { pending: 4, parked: 1 }, createdAt: AT }]);
    expect(sent).toEqual([]);
  });

  it('passes the relay state of an announcement with a depth to the chart, and records the depth', async () => {
    const { announce, sent, depths } = inbox();
    expect(await announce({ relay: 'down', outbox: { pending: 0, parked: 0 } })).toBe('completed');
    expect(sent).toEqual([{ storeId: 'paris-1', event: { type: 'store.announced', relay: 'down' } }]);
    expect(depths).toHaveLength(1);
  });

  it('dead-letters an announcement that says neither', async () => {
    const { announce, sent, depths } = inbox();
    expect(await announce({})).toBe('dead-lettered INBOX_MESSAGE_INVALID');
    expect(await announce({ outbox: { pending: -1, parked: 0 } })).toBe('dead-lettered INBOX_MESSAGE_INVALID');
    expect(sent).toEqual([]);
    expect(depths).toEqual([]);
  });
});
