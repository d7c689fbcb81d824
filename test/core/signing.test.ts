import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH } from '../../src/core/json.js';
import { Signer, Verifier, canonicalJson, generateSigningKeyPair, keyPairToPem, operationSignedFields, storeMessageSignedFields } from '../../src/core/signing.js';

const pair = generateSigningKeyPair();
const key = { keyId: 'k1', privateKey: pair.privateKey };
const trusted = { k1: pair.publicKey };

function nested(depth: number): unknown {
  let value: unknown = 0;
  for (let level = 0; level < depth; level += 1) value = [value];
  return value;
}

describe('canonicalJson', () => {
  it('sorts object keys at every level, keeps arrays in order, and writes no whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, 1, { z: true, y: null }], c: 'x' } })).toBe('{"a":{"c":"x","d":[3,1,{"y":null,"z":true}]},"b":1}');
  });

  it('is the same text whatever order the keys were written in', () => {
    expect(canonicalJson({ id: 'o', payload: { q: 1, p: 2 } })).toBe(canonicalJson({ payload: { p: 2, q: 1 }, id: 'o' }));
  });

  it('leaves out keys whose value is undefined, as JSON.stringify does', () => {
    expect(canonicalJson({ a: 1, b: undefined })).toBe('{"a":1}');
  });

  it('escapes strings and writes numbers as JSON does', () => {
    expect(canonicalJson({ text: 'a"b\\\n\u00e9', n: 1e21, m: -0.5 })).toBe(`{"m":-0.5,"n":1e+21,"text":${JSON.stringify('a"b\\\n\u00e9')}}`);
  });

  it('writes every string exactly as JSON.stringify does: each UTF-16 code unit alone and among others, surrogate pairs, long text', () => {
    const differing: string[] = [];
    for (let unit = 0; unit <= 0xffff; unit += 1) {
      const char = String.fromCharCode(unit);
      for (const text of [char, `a${char}b`]) if (canonicalJson(text) !== JSON.stringify(text)) differing.push(unit.toString(16));
    }
    expect(differing).toEqual([]);
    for (const text of ['', '😀', 'caf\u00e9 😀 \ud83d', '\udc00x\ud83d\ude00', 'x'.repeat(10_000), `${'y'.repeat(5_000)}"${'z'.repeat(5_000)}`]) {
      expect(canonicalJson({ text })).toBe(`{"text":${JSON.stringify(text)}}`);
    }
  });

  it('writes every finite number exactly as JSON.stringify does', () => {
    const numbers = [0, -0, 1, -1, 0.1, 1 / 3, -2.5e-7, 1e-7, 1e-6, 123456789012345680000, 1e21, 1e300, -1e-300, 2 ** 53, -(2 ** 53) - 2,
      Number.MAX_VALUE, Number.MIN_VALUE, Number.EPSILON, Math.PI];
    for (let n = 0; n < 1_000; n += 1) numbers.push(Math.sin(n) * 10 ** ((n % 41) - 20));
    expect(numbers.map((n) => canonicalJson([n]))).toEqual(numbers.map((n) => JSON.stringify([n])));
  });

  it.each<[string, unknown]>([
    ['a function', { f: () => 1 }],
    ['a non-finite number', { n: Number.NaN }],
    ['a Date', { when: new Date(0) }],
    ['a bigint', { n: 1n }],
    ['a value nested too deep', nested(MAX_JSON_DEPTH + 2)],
  ])('refuses %s with a TypeError', (_label, value) => {
    expect(() => canonicalJson(value)).toThrow(TypeError);
  });

  it('takes a payload of the deepest accepted depth inside an envelope', () => {
    expect(() => canonicalJson({ payload: nested(MAX_JSON_DEPTH - 1) })).not.toThrow();
  });
});

describe('Signer and Verifier', () => {
  const fields = { id: 'op-1', storeId: 'paris-1', payload: { n: 1 } };

  it('verify what was signed, under the key id, and nothing else', () => {
    const signature = new Signer(key, 'operation', 'test').sign(fields);
    expect(signature.keyId).toBe('k1');
    expect(signature.value).toMatch(/^[A-Za-z0-9_-]{86}$/);
    const verifier = new Verifier(trusted, 'operation', 'test');
    expect(verifier.verify({ payload: { n: 1 }, storeId: 'paris-1', id: 'op-1' }, signature)).toEqual({ valid: true, keyId: 'k1' });
    expect(verifier.verify({ ...fields, payload: { n: 2 } }, signature)).toMatchObject({ valid: false, problem: 'bad-signature' });
  });

  it('never take a signature of one kind for the other', () => {
    const signature = new Signer(key, 'store-message', 'test').sign(fields);
    expect(new Verifier(trusted, 'operation', 'test').verify(fields, signature)).toMatchObject({ valid: false, problem: 'bad-signature' });
    expect(new Verifier(trusted, 'store-message', 'test').verify(fields, signature).valid).toBe(true);
  });

  it.each<[string, unknown, string]>([
    ['no signature', undefined, 'unsigned'],
    ['an unknown key id', { keyId: 'k9', value: 'A'.repeat(86) }, 'unknown-key'],
    ['a value of the wrong length', { keyId: 'k1', value: 'AAAA' }, 'bad-signature'],
    ['a string', 'signed', 'bad-signature'],
  ])('say why they refuse %s', (_label, signature, problem) => {
    expect(new Verifier(trusted, 'operation', 'test').verify(fields, signature)).toMatchObject({ valid: false, problem });
  });

  it('take PEM texts as well as KeyObjects', () => {
    const pem = keyPairToPem(pair);
    const signature = new Signer({ keyId: 'k1', privateKey: pem.privateKeyPem }, 'operation', 'test').sign(fields);
    expect(new Verifier({ k1: pem.publicKeyPem }, 'operation', 'test').verify(fields, signature).valid).toBe(true);
  });

  it.each<[string, () => unknown, RegExp]>([
    ['a bad key id', () => new Signer({ keyId: 'has space', privateKey: pair.privateKey }, 'operation', 'opts.signing'), /opts\.signing: key id "has space"/],
    ['a public key to sign with', () => new Signer({ keyId: 'k1', privateKey: pair.publicKey }, 'operation', 'opts.signing'), /opts\.signing\.privateKey must be an Ed25519 private key/],
    ['a key of another algorithm', () => new Signer({ keyId: 'k1', privateKey: generateKeyPairSync('x25519').privateKey }, 'operation', 'opts.signing'), /must be an Ed25519 key, got x25519/],
    ['text that is not PEM', () => new Verifier({ k1: 'not a key' }, 'operation', 'opts.trusted'), /opts\.trusted\.k1 is not a public key in PEM/],
    ['no trusted key at all', () => new Verifier({}, 'operation', 'opts.trusted'), /opts\.trusted must name at least one trusted public key/],
  ])('refuse %s with a TypeError naming the option', (_label, make, message) => {
    expect(make).toThrow(TypeError);
    expect(make).toThrow(message);
  });
});

describe('the signed fields', () => {
  it('of an operation leave out replyTo, correlationId and the signature', () => {
    expect(
      Object.keys(operationSignedFields({ id: 1, storeId: 2, type: 3, latency: 4, createdAt: 5, expiresAt: 6, payload: 7, replyTo: 8, correlationId: 9, signature: 10 })),
    ).toEqual(['id', 'storeId', 'type', 'latency', 'createdAt', 'expiresAt', 'payload']);
  });

  it('of a store message are all but the signature', () => {
    expect(Object.keys(storeMessageSignedFields({ id: 1, kind: 2, type: 3, storeId: 4, correlationId: 5, body: 6, createdAt: 7, signature: 8 }))).toEqual([
      'id',
      'kind',
      'type',
      'storeId',
      'correlationId',
      'body',
      'createdAt',
    ]);
  });
});
