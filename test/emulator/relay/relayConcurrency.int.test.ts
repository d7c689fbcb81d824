// Many requests at once through the real hyco-https listener, and spreading over several listeners (spec §4.1, §11 P22).
import { afterEach, describe, expect, it } from 'vitest';
import { Closeables, patternBytes, readBody, send, startListener, startTestRelay, type RequestHandler } from './relayTestKit.js';

const closeables = new Closeables();
afterEach(() => closeables.drain());

/** Runs `action` after `turns` turns of the event loop. */
function afterTurns(turns: number, action: () => void): void {
  if (turns === 0) action();
  else setImmediate(() => afterTurns(turns - 1, action));
}

/** Answers with the request body reversed, a request-dependent number of loop turns later, so answers interleave. */
const reverseHandler: RequestHandler = (req, res) => {
  void readBody(req).then((body) => {
    const index = Number(req.headers['x-index']);
    afterTurns(index % 7, () => {
      res.setHeader('x-index', String(index));
      res.setHeader('content-type', 'application/octet-stream');
      res.end(Buffer.from(body).reverse());
    });
  });
};

describe('concurrency', () => {
  it('answers 200 concurrent requests through one listener, each with its own response', async () => {
    const { emulator } = await startTestRelay(closeables);
    await startListener(closeables, emulator, 'hc1', reverseHandler);
    const bodies = Array.from({ length: 200 }, (_, index) =>
      index % 20 === 0 ? patternBytes(100 * 1024, index) : Buffer.from(JSON.stringify({ index, text: 'x'.repeat(index) })),
    );
    const responses = await Promise.all(
      bodies.map(async (body, index) => {
        const response = await send(emulator, `hc1/orders/${index}`, {
          method: 'POST',
          headers: { 'x-index': String(index) },
          body,
        });
        return { index, status: response.status, header: response.headers.get('x-index'), body: Buffer.from(await response.arrayBuffer()) };
      }),
    );
    for (const response of responses) {
      expect(response.status).toBe(200);
      expect(response.header).toBe(String(response.index));
      expect(response.body.equals(Buffer.from(bodies[response.index]!).reverse())).toBe(true);
    }
    expect(emulator.counters()).toMatchObject({ relayedRequests: 200, completedResponses: 200, rendezvousRequests: 10, relayErrors: 0 });
    expect(emulator.pendingRequestCount()).toBe(0);
  });

  it('spreads requests over all connected listeners', async () => {
    const { emulator } = await startTestRelay(closeables);
    const served = [0, 0, 0];
    for (const [listenerIndex] of served.entries()) {
      await startListener(closeables, emulator, 'hc1', (_req, res) => {
        served[listenerIndex]! += 1;
        res.end(String(listenerIndex));
      });
    }
    expect(emulator.listenerCount('hc1')).toBe(3);
    const answers = await Promise.all(Array.from({ length: 30 }, async () => (await send(emulator, 'hc1/x')).text()));
    expect(answers).toHaveLength(30);
    // Round-robin: every listener gets its share.
    expect(served).toEqual([10, 10, 10]);
  });
});
