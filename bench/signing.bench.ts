/**
 * The cost of signatures per operation: the cloud signing an operation envelope (canonical form + Ed25519) and the
 * store verifying it, for a typical payload (1 KiB) and a large one (200 KiB). Baseline, in the same run on the same
 * bytes: bare node:crypto sign and verify of the already canonical text, so the ratio shows what the canonical form
 * adds to the signature itself. Prints a table, then one JSON line.
 *
 *   node --import tsx bench/signing.bench.ts [--rounds 2000]
 */
import { sign, verify } from 'node:crypto';
import { createOperation, type JsonValue } from '../src/core/operation.js';
import { Signer, Verifier, canonicalJson, generateSigningKeyPair, operationSignedFields } from '../src/core/signing.js';
import { median } from './stats.js';

function argument(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index < 0 ? fallback : Number(process.argv[index + 1]);
}

const ROUNDS = argument('rounds', 2_000);
const REPEATS = 5;
const pair = generateSigningKeyPair();
const signer = new Signer({ keyId: 'bench', privateKey: pair.privateKey }, 'operation', 'bench');
const verifier = new Verifier({ bench: pair.publicKey }, 'operation', 'bench');

/** An order payload of about `bytes` bytes of JSON: order lines, as a click-and-collect order has them. */
function payloadOf(bytes: number): JsonValue {
  const lines: JsonValue[] = [];
  const payload = { orderId: 'CC-1001', customer: 'Ada Lovelace', lines };
  while (JSON.stringify(payload).length < bytes) lines.push({ sku: `SKU-${lines.length.toString().padStart(6, '0')}`, quantity: (lines.length % 9) + 1, note: 'gift wrap' });
  return payload;
}

/** Median over REPEATS runs of ROUNDS calls, in µs per call. */
function timePerCall(work: () => void): number {
  for (let warm = 0; warm < Math.min(200, ROUNDS); warm += 1) work();
  const runs: number[] = [];
  for (let repeat = 0; repeat < REPEATS; repeat += 1) {
    const started = process.hrtime.bigint();
    for (let round = 0; round < ROUNDS; round += 1) work();
    runs.push(Number(process.hrtime.bigint() - started) / 1_000 / ROUNDS);
  }
  return median(runs);
}

interface Row {
  payload: string;
  payloadBytes: number;
  signUs: number;
  bareSignUs: number;
  verifyUs: number;
  bareVerifyUs: number;
}

const rows: Row[] = [];
for (const [label, bytes] of [['1 KiB', 1024], ['200 KiB', 200 * 1024]] as const) {
  const operation = createOperation({ storeId: 'paris-1', type: 'clickAndCollect.order', payload: payloadOf(bytes), latency: 'realtime', timeToLiveInMs: 60_000 });
  const signature = signer.sign(operationSignedFields(operation));
  const signed = { ...operation, signature };
  // The bytes storelink signs, made once: the baseline signs and verifies exactly them.
  const text = Buffer.from(`storelink operation v1\n${canonicalJson(operationSignedFields(operation))}`, 'utf8');
  const bareSignature = sign(null, text, pair.privateKey);
  if (!verifier.verify(operationSignedFields(signed), signed.signature).valid || !verify(null, text, pair.publicKey, bareSignature)) throw new Error('signature check failed');
  rows.push({
    payload: label,
    payloadBytes: Buffer.byteLength(JSON.stringify(operation.payload)),
    signUs: timePerCall(() => void signer.sign(operationSignedFields(operation))),
    bareSignUs: timePerCall(() => void sign(null, text, pair.privateKey)),
    verifyUs: timePerCall(() => void verifier.verify(operationSignedFields(signed), signed.signature)),
    bareVerifyUs: timePerCall(() => void verify(null, text, pair.publicKey, bareSignature)),
  });
}

const rate = (us: number) => Math.round(1_000_000 / us).toLocaleString('en');
console.log('| payload | storelink sign (µs, ops/s) | bare sign (µs) | ratio | storelink verify (µs, ops/s) | bare verify (µs) | ratio |');
console.log('| --- | --- | --- | --- | --- | --- | --- |');
for (const row of rows) {
  console.log(
    `| ${row.payload} | ${row.signUs.toFixed(1)}, ${rate(row.signUs)} | ${row.bareSignUs.toFixed(1)} | ${(row.signUs / row.bareSignUs).toFixed(2)} | ${row.verifyUs.toFixed(1)}, ${rate(row.verifyUs)} | ${row.bareVerifyUs.toFixed(1)} | ${(row.verifyUs / row.bareVerifyUs).toFixed(2)} |`,
  );
}
console.log(JSON.stringify({ bench: 'signing', rounds: ROUNDS, rows }));
