import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ReplyWaiting } from '../../src/cloud/replyWaiting.js';

const operation = { id: 'op-1', storeId: 'paris-1', type: 'stock.query', payload: null };

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('reply waiting', () => {
  it('hands the reply to the waiting publisher once and tells which operation it answered', async () => {
    const replies = new ReplyWaiting();
    const wait = replies.wait(operation, 1_000);
    expect(replies.settle('op-1', 'paris-1', { outcome: 'done', result: 7 })).toEqual(operation);
    await expect(wait.promise).resolves.toEqual({ outcome: 'done', result: 7 });
    expect(replies.settle('op-1', 'paris-1', { outcome: 'done', result: 8 })).toBeUndefined();
    expect(replies.size).toBe(0);
  });

  it("settles only with a reply from the store the operation was sent to, and tells which store that is", async () => {
    const replies = new ReplyWaiting();
    const wait = replies.wait(operation, 1_000);
    expect(replies.storeOf('op-1')).toBe('paris-1');
    expect(replies.storeOf('op-9')).toBeUndefined();
    expect(replies.settle('op-1', 'lyon-2', { outcome: 'rejected', error: { code: 'OPERATION_REJECTED', message: 'forged' } })).toBeUndefined();
    expect(replies.size).toBe(1);
    expect(replies.settle('op-1', 'paris-1', { outcome: 'done', result: 7 })).toEqual(operation);
    await expect(wait.promise).resolves.toEqual({ outcome: 'done', result: 7 });
  });

  it('ends without a reply at the deadline', async () => {
    const replies = new ReplyWaiting();
    const wait = replies.wait(operation, 1_000);
    vi.advanceTimersByTime(1_000);
    await expect(wait.promise).resolves.toBeUndefined();
    expect(replies.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('ends when the caller aborts, and lets go of the signal and the timer whichever way it ends', async () => {
    const replies = new ReplyWaiting();
    const controller = new AbortController();
    const removed = vi.spyOn(controller.signal, 'removeEventListener');
    const aborted = replies.wait(operation, 1_000, controller.signal);
    controller.abort();
    await expect(aborted.promise).resolves.toBeUndefined();
    expect(vi.getTimerCount()).toBe(0);

    const lasting = new AbortController();
    const lastingRemoved = vi.spyOn(lasting.signal, 'removeEventListener');
    const answered = replies.wait({ ...operation, id: 'op-2' }, 1_000, lasting.signal);
    replies.settle('op-2', 'paris-1', { outcome: 'rejected', error: { code: 'X', message: 'no' } });
    await answered.promise;
    expect(lastingRemoved).toHaveBeenCalledWith('abort', expect.any(Function));
    expect(removed).toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('ends at once for a signal already aborted, and cancelAll ends every wait', async () => {
    const replies = new ReplyWaiting();
    const controller = new AbortController();
    controller.abort();
    await expect(replies.wait(operation, 1_000, controller.signal).promise).resolves.toBeUndefined();
    const waits = [replies.wait({ ...operation, id: 'a' }, 1_000), replies.wait({ ...operation, id: 'b' }, 1_000)];
    replies.cancelAll();
    await expect(Promise.all(waits.map((wait) => wait.promise))).resolves.toEqual([undefined, undefined]);
    expect(replies.size).toBe(0);
  });
});
