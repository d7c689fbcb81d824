import { describe, expect, it } from 'vitest';
import { buildRequestHeaders, buildResponseHeaders, validReasonPhrase } from '../../../src/emulator/relay/relayHeaders.js';

describe('buildRequestHeaders', () => {
  it('drops framing, hop-by-hop and relay headers, joins repeats and adds Via', () => {
    const headers = buildRequestHeaders(
      [
        'Host', '127.0.0.1:9',
        'Content-Length', '5',
        'Connection', 'keep-alive, X-Hop',
        'X-Hop', 'gone',
        'Transfer-Encoding', 'chunked',
        'ServiceBusAuthorization', 'SharedAccessSignature sr=a',
        'Expect', '100-continue',
        'X-Custom', 'a',
        'x-custom', 'b',
        'Cookie', 'a=1',
        'cookie', 'b=2',
        'Authorization', 'Bearer app-token',
      ],
      { dropAuthorization: false, viaHost: 'ns.local' },
    );
    expect(headers).toEqual({
      'X-Custom': 'a, b',
      Cookie: 'a=1; b=2',
      Authorization: 'Bearer app-token',
      Via: '1.1 ns.local',
    });
  });

  it('drops Authorization when it carried the relay token and extends an existing Via', () => {
    const headers = buildRequestHeaders(['Authorization', 'SharedAccessSignature x', 'Via', '1.0 proxy'], {
      dropAuthorization: true,
      viaHost: 'h',
    });
    expect(headers).toEqual({ Via: '1.0 proxy, 1.1 h' });
  });
});

describe('buildResponseHeaders', () => {
  it('keeps valid headers, arrays and numbers; drops framing and invalid ones', () => {
    const { headers, rejected } = buildResponseHeaders(
      {
        'content-type': 'text/plain',
        'content-length': '99',
        'transfer-encoding': 'chunked',
        connection: 'close, x-hop',
        'x-hop': '1',
        'set-cookie': ['a=1', 'b=2'],
        'x-number': 42,
        'bad name': 'x',
        'x-bad-value': 'line\nbreak',
        'x-unicode': 'caf\u00e9 \u2603',
        'x-object': { a: 1 },
      },
      'ns',
    );
    expect(headers).toEqual({ 'content-type': 'text/plain', 'set-cookie': ['a=1', 'b=2'], 'x-number': '42', Via: '1.1 ns' });
    expect(rejected.sort()).toEqual(['bad name', 'x-bad-value', 'x-object', 'x-unicode']);
  });

  it('accepts no headers at all', () => {
    expect(buildResponseHeaders(undefined, 'ns').headers).toEqual({ Via: '1.1 ns' });
    expect(buildResponseHeaders(null, 'ns').rejected).toEqual([]);
  });
});

describe('validReasonPhrase', () => {
  it('refuses phrases Node would reject', () => {
    expect(validReasonPhrase('Fine')).toBe('Fine');
    expect(validReasonPhrase('')).toBeUndefined();
    expect(validReasonPhrase(null)).toBeUndefined();
    expect(validReasonPhrase('a\r\nb')).toBeUndefined();
  });
});
