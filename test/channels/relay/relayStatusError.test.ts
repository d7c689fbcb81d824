import { describe, expect, it } from 'vitest';
import { relayStatusError } from '../../../src/channels/relay/relaySender.js';
import { relayFailureReasonOf } from '../../../src/core/linkContract.js';

describe('relayStatusError: what a status the relay itself answered means for the channel', () => {
  it.each([
    [401, 'MissingToken: the request has no token', 'RELAY_UNAUTHORIZED', 'unauthorized'],
    [403, "'Send' claim(s) are required", 'RELAY_UNAUTHORIZED', 'unauthorized'],
    [404, 'There are no listeners connected for the endpoint.', 'RELAY_NO_LISTENER', 'no-listener'],
    [404, 'Endpoint does not exist.', 'RELAY_ENDPOINT_NOT_FOUND', 'no-listener'],
    [502, 'listener disconnected', 'RELAY_NO_LISTENER', 'no-listener'],
    [503, '', 'RELAY_NO_LISTENER', 'no-listener'],
    [504, 'The request was routed to the listener but the listener did not respond in the required time.', 'RELAY_TIMEOUT', 'timeout'],
    [413, 'body too large', 'PAYLOAD_TOO_LARGE', undefined],
    [500, 'internal', 'RELAY_UNREACHABLE', 'unreachable'],
    [400, 'bad upgrade', 'RELAY_UNREACHABLE', 'unreachable'],
  ] as const)('%i %j → %s (link reason %s)', (status, detail, code, reason) => {
    const error = relayStatusError(status, detail);
    expect(error.code).toBe(code);
    expect(error.message).toContain(String(status));
    expect(relayFailureReasonOf(error.code)).toBe(reason);
  });

  it('keeps long relay bodies out of the message', () => {
    expect(relayStatusError(500, 'x'.repeat(10_000)).message.length).toBeLessThan(400);
  });
});
