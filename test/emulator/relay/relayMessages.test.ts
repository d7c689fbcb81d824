import { describe, expect, it } from 'vitest';
import { parseListenerMessage, rendezvousNotice, requestMessage } from '../../../src/emulator/relay/relayMessages.js';

describe('parseListenerMessage', () => {
  it('reads a hyco-https response', () => {
    const result = parseListenerMessage(
      JSON.stringify({ response: { requestId: 'r1', statusCode: 200, statusDescription: 'OK', responseHeaders: { a: 'b' }, body: true } }),
    );
    expect(result).toEqual({
      ok: true,
      message: { kind: 'response', response: { requestId: 'r1', statusCode: 200, statusDescription: 'OK', responseHeaders: { a: 'b' }, body: true } },
    });
  });

  it('accepts a string status code, as in the documentation example', () => {
    const result = parseListenerMessage('{"response":{"requestId":"r","statusCode":"404"}}');
    expect(result.ok && result.message.kind === 'response' && result.message.response.statusCode).toBe(404);
  });

  it('reads renewToken', () => {
    expect(parseListenerMessage('{"renewToken":{"token":"SharedAccessSignature x"}}')).toEqual({
      ok: true,
      message: { kind: 'renewToken', token: 'SharedAccessSignature x' },
    });
  });

  it.each([
    ['not json', 'not JSON'],
    ['{"hello":1}', 'not a response'],
    ['{"response":{"statusCode":200}}', 'not a response'],
    ['{"response":{"requestId":"r","statusCode":42}}', 'not a response'],
    ['{"renewToken":{}}', 'not a response'],
    ['null', 'not a response'],
  ])('rejects %s', (text, error) => {
    const result = parseListenerMessage(text);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error).toContain(error);
  });
});

describe('relay messages', () => {
  it('builds the rendezvous notice without method or body', () => {
    expect(JSON.parse(rendezvousNotice('ws://a', 'id1'))).toEqual({ request: { address: 'ws://a', id: 'id1' } });
  });

  it('builds a full request message', () => {
    const message = JSON.parse(
      requestMessage({
        address: 'ws://a',
        id: 'i',
        requestTarget: '/hc1/x',
        method: 'GET',
        remoteEndpoint: { address: '127.0.0.1', port: 1 },
        requestHeaders: { Via: '1.1 h' },
        body: false,
      }),
    ) as { request: Record<string, unknown> };
    expect(message.request).toMatchObject({ method: 'GET', requestTarget: '/hc1/x', body: false });
  });
});
