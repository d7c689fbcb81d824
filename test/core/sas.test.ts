import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { audienceCovers, createSasToken, parseSasToken, sasFailurePrefixOf, verifySasToken } from '../../src/core/sas.js';
import { StorelinkError, isStorelinkError } from '../../src/core/errors.js';

// Computed outside storelink with: printf '<sr>\n<se>' | openssl dgst -sha256 -hmac '<key>' -binary | base64
const OPENSSL_VECTORS = [
  {
    resource: 'http://127.0.0.1:9090/hc1',
    keyName: 'RootManageSharedAccessKey',
    key: 'SAS_KEY_VALUE',
    expiresOnInSeconds: 1795881600,
    signature: 'JUKu5JQayaY/OzwmCvOotQKPRLIrKBnQhqqUD9/qazc=',
  },
  {
    resource: 'sb://contoso.servicebus.windows.net/store-42',
    keyName: 'cloud-send',
    key: 'dGVzdC1rZXk=',
    expiresOnInSeconds: 1700000000,
    signature: 'UFdVsqV+utmzeqvSBR7hKU6n/GS9V8gbc27wh+RTvCA=',
  },
];

function fieldsOf(token: string): Map<string, string> {
  return new Map(
    token
      .slice('SharedAccessSignature '.length)
      .split('&')
      .map((pair) => pair.split('=', 2) as [string, string]),
  );
}

const keysFor = (known: Record<string, string[]>) => (name: string) => known[name];

describe('createSasToken', () => {
  it.each(OPENSSL_VECTORS)('signs $resource like openssl does', (vector) => {
    const token = createSasToken(vector);
    const fields = fieldsOf(token);
    expect(token.startsWith('SharedAccessSignature ')).toBe(true);
    expect(fields.get('sr')).toBe(encodeURIComponent(vector.resource));
    expect(decodeURIComponent(fields.get('sig')!)).toBe(vector.signature);
    expect(fields.get('se')).toBe(String(vector.expiresOnInSeconds));
    expect(fields.get('skn')).toBe(vector.keyName);
  });

  it('signs the url-encoded resource and expiry with the UTF-8 bytes of the key string', () => {
    const token = createSasToken({ resource: 'sb://ns/q1', keyName: 'k', key: 'a2V5', nowInMs: 1_000_000, timeToLiveInMs: 60_000 });
    const fields = fieldsOf(token);
    const expected = createHmac('sha256', 'a2V5').update(`${encodeURIComponent('sb://ns/q1')}\n1060`).digest('base64');
    expect(fields.get('se')).toBe('1060');
    expect(decodeURIComponent(fields.get('sig')!)).toBe(expected);
  });

  it('defaults to one hour of validity', () => {
    const token = createSasToken({ resource: 'sb://ns/q1', keyName: 'k', key: 'x', nowInMs: 10_000 });
    expect(parseSasToken(token).expiresOnInSeconds).toBe(10 + 3600);
  });

  it.each([
    [{ resource: '', keyName: 'k', key: 'x' }, TypeError],
    [{ resource: 'sb://ns', keyName: '', key: 'x' }, TypeError],
    [{ resource: 'sb://ns', keyName: 'k', key: '' }, TypeError],
    [{ resource: 'sb://ns', keyName: 'k', key: 'x', timeToLiveInMs: 0 }, RangeError],
    [{ resource: 'sb://ns', keyName: 'k', key: 'x', expiresOnInSeconds: 1.5 }, RangeError],
  ])('rejects bad arguments %#', (options, errorClass) => {
    expect(() => createSasToken(options)).toThrow(errorClass);
  });
});

describe('parseSasToken', () => {
  it('accepts fields in any order and names in any case, and keeps sr as signed', () => {
    const parsed = parseSasToken('SharedAccessSignature SKN=my%20key&se=42&SIG=abc%2B%3D&sr=http%3a%2f%2fns%2fhc1');
    expect(parsed).toEqual({
      resource: 'http://ns/hc1',
      encodedResource: 'http%3a%2f%2fns%2fhc1',
      signature: 'abc+=',
      expiresOnInSeconds: 42,
      encodedExpiry: '42',
      keyName: 'my key',
    });
  });

  it.each([
    ['no prefix', 'sr=a&sig=b&se=1&skn=c'],
    ['wrong prefix', 'SharedAccessKey sr=a&sig=b&se=1&skn=c'],
    ['missing sig', 'SharedAccessSignature sr=a&se=1&skn=c'],
    ['empty skn', 'SharedAccessSignature sr=a&sig=b&se=1&skn='],
    ['expiry not a number', 'SharedAccessSignature sr=a&sig=b&se=soon&skn=c'],
    ['duplicate field', 'SharedAccessSignature sr=a&sr=b&sig=b&se=1&skn=c'],
    ['not a pair', 'SharedAccessSignature sr=a&sig=b&se=1&skn=c&oops'],
    ['bad encoding', 'SharedAccessSignature sr=%E0%A4%A&sig=b&se=1&skn=c'],
  ])('rejects a malformed token: %s', (_label, token) => {
    expect(() => parseSasToken(token)).toThrow(expect.objectContaining({ code: 'SAS_TOKEN_MALFORMED' }));
  });
});

describe('verifySasToken', () => {
  const nowInMs = 1_700_000_000_000;
  const token = createSasToken({ resource: 'sb://ns/q1', keyName: 'send', key: 'primary', nowInMs, timeToLiveInMs: 60_000 });

  it('accepts a token signed with the primary or the secondary key', () => {
    expect(verifySasToken(token, { keysFor: keysFor({ send: ['primary', 'other'] }), nowInMs }).resource).toBe('sb://ns/q1');
    expect(verifySasToken(token, { keysFor: keysFor({ send: ['other', 'primary'] }), nowInMs }).keyName).toBe('send');
  });

  it('verifies the resource text as sent, whatever the hex case of its encoding', () => {
    const lowerHex = 'http%3a%2f%2fns%2fhc1';
    const signature = createHmac('sha256', 'k').update(`${lowerHex}\n${nowInMs / 1000 + 60}`).digest('base64');
    const lowerHexToken = `SharedAccessSignature sr=${lowerHex}&sig=${encodeURIComponent(signature)}&se=${nowInMs / 1000 + 60}&skn=n`;
    expect(verifySasToken(lowerHexToken, { keysFor: keysFor({ n: ['k'] }), nowInMs }).resource).toBe('http://ns/hc1');
  });

  it.each([
    ['an unknown key name', { other: ['primary'] }, nowInMs, 'SAS_KEY_UNKNOWN'],
    ['a wrong key', { send: ['nope'] }, nowInMs, 'SAS_SIGNATURE_INVALID'],
    ['an expired token', { send: ['primary'] }, nowInMs + 61_000, 'SAS_TOKEN_EXPIRED'],
  ])('rejects %s', (_label, known, now, code) => {
    expect(() => verifySasToken(token, { keysFor: keysFor(known), nowInMs: now })).toThrow(expect.objectContaining({ code }));
  });

  it('rejects a tampered resource or expiry', () => {
    const keys = { keysFor: keysFor({ send: ['primary'] }), nowInMs };
    expect(() => verifySasToken(token.replace('q1', 'q2'), keys)).toThrow(expect.objectContaining({ code: 'SAS_SIGNATURE_INVALID' }));
    const later = String(Number(fieldsOf(token).get('se')) + 1000);
    expect(() => verifySasToken(token.replace(/se=\d+/, `se=${later}`), keys)).toThrow(
      expect.objectContaining({ code: 'SAS_SIGNATURE_INVALID' }),
    );
  });

  it('tolerates the configured clock skew, and marks expiry as retryable', () => {
    const options = { keysFor: keysFor({ send: ['primary'] }), nowInMs: nowInMs + 61_000 };
    expect(verifySasToken(token, { ...options, clockSkewInMs: 5_000 }).keyName).toBe('send');
    try {
      verifySasToken(token, options);
      expect.unreachable();
    } catch (error) {
      expect(isStorelinkError(error, 'SAS_TOKEN_EXPIRED') && error.retryable).toBe(true);
    }
  });
});

describe('audienceCovers', () => {
  it.each([
    ['http://ns:9090/hc1', 'sb://NS/hc1', true],
    ['http://ns/', 'https://ns/hc1', true],
    ['http://ns/$hc/hc1', 'http://ns/hc1', true],
    ['http://ns/hc1/', 'http://ns/hc1/operations/x', true],
    ['http://ns/HC1', 'http://ns/hc1', true],
    ['http://ns/hc', 'http://ns/hc1', false],
    ['http://ns/hc1/extra', 'http://ns/hc1', false],
    ['http://other/hc1', 'http://ns/hc1', false],
  ])('%s covers %s: %s', (audience, target, expected) => {
    expect(audienceCovers(audience, target)).toBe(expected);
  });

  it('can ignore the host, as Service Bus does', () => {
    expect(audienceCovers('sb://localhost/q1', 'sb://127.0.0.1:5672/q1', { compareHost: false })).toBe(true);
  });
});

describe('sasFailurePrefixOf', () => {
  it.each([
    ['SAS_TOKEN_EXPIRED', 'ExpiredToken'],
    ['SAS_TOKEN_MALFORMED', 'MalformedToken'],
    ['SAS_KEY_UNKNOWN', 'InvalidSignature'],
    ['SAS_SIGNATURE_INVALID', 'InvalidSignature'],
  ] as const)('names %s as Azure does: %s', (code, prefix) => {
    expect(sasFailurePrefixOf(new StorelinkError(code, 'x'))).toBe(prefix);
  });

  it('calls anything else an invalid token', () => {
    expect(sasFailurePrefixOf(new Error('boom'))).toBe('InvalidToken');
  });
});
