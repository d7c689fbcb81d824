import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const BENCH = fileURLToPath(new URL('../../bench/ledger.bench.ts', import.meta.url));

/** The ledger benchmark in smoke mode, so that it never rots: it runs, measures every case and prints its JSON line. */
describe('bench/ledger.bench.ts --smoke', () => {
  it('measures the ledger and both references in every case and prints one BENCH_JSON line', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', BENCH, '--smoke'], { timeout: 90_000 });
    const lines = stdout.split('\n').filter((line) => line.startsWith('BENCH_JSON '));
    expect(lines).toHaveLength(1);
    const result = JSON.parse(lines[0]!.slice('BENCH_JSON '.length)) as {
      bench: string;
      smoke: boolean;
      recordsPerSecond: Record<'noFsync' | 'fsync', Record<'ledger' | 'raw' | 'rewrite', number>>;
      concurrentRecordsPerSecond: Record<'noFsync' | 'fsync', Record<'ledger' | 'raw' | 'rewrite', number>>;
      recordsPerWrite: Record<'noFsync' | 'fsync', Record<'ledger' | 'raw' | 'rewrite', number>>;
      costBySize: { size: number; ledger: { meanMs: number }; raw: { meanMs: number }; rewrite: { meanMs: number }; openMs: number }[];
    };
    expect(result).toMatchObject({ bench: 'ledger', smoke: true });
    for (const figures of [result.recordsPerSecond, result.concurrentRecordsPerSecond]) {
      for (const setting of ['noFsync', 'fsync'] as const) {
        for (const kind of ['ledger', 'raw', 'rewrite'] as const) expect(figures[setting][kind]).toBeGreaterThan(0);
      }
    }
    // 100 callers share writes (group commit), in the ledger as in the references.
    for (const setting of ['noFsync', 'fsync'] as const) expect(result.recordsPerWrite[setting].ledger).toBeGreaterThan(1);
    expect(result.costBySize.map((cost) => cost.size)).toEqual([1_000, 10_000]);
    for (const cost of result.costBySize) {
      for (const figure of [cost.ledger.meanMs, cost.raw.meanMs, cost.rewrite.meanMs, cost.openMs]) expect(figure).toBeGreaterThan(0);
    }
    expect(stdout).toContain('records/s');
  }, 120_000);
});
