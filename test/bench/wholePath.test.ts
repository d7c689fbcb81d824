/**
 * The whole-path benchmark in its smoke mode (tiny counts, 2 stores), so it never rots: every row is there with
 * finite, positive figures. No timing threshold: the figures of a smoke run mean nothing.
 */
import { describe, expect, it } from 'vitest';
import { runBenchSmoke } from '../support/benchSmoke.js';

interface Row {
  path: string;
  stores: number;
  inFlight: number;
  [figure: string]: number | string;
}

describe('the whole-path benchmark, smoke mode', () => {
  it('measures every path, raw and storelink (and raw + signatures), for 1 and 2 stores, sequentially and 32 in flight', async () => {
    const { exitCode, stdout, stderr } = await runBenchSmoke('wholePath.bench.ts');
    expect(exitCode, stderr).toBe(0);
    const line = stdout.split('\n').find((candidate) => candidate.startsWith('BENCH_JSON '));
    expect(line, stdout).toBeDefined();
    const report = JSON.parse(line!.slice('BENCH_JSON '.length)) as { bench: string; smoke: boolean; rows: Row[] };
    expect(report.bench).toBe('wholePath');
    expect(report.smoke).toBe(true);
    const keys = report.rows.map((row) => `${row.path}/${row.stores}/${row.inFlight}`).sort();
    const expected = ['realtime', 'oneway', 'requestreply'].flatMap((name) => [1, 2].flatMap((stores) => [1, 32].map((inFlight) => `${name}/${stores}/${inFlight}`))).sort();
    expect(keys).toEqual(expected);
    for (const row of report.rows) {
      for (const figure of ['rawP50Ms', 'rawP99Ms', 'rawPerSecond', 'storelinkP50Ms', 'storelinkP99Ms', 'storelinkPerSecond', 'p50Ratio', 'p99Ratio', 'rateRatio']) {
        const value = row[figure];
        expect(typeof value === 'number' && Number.isFinite(value) && value > 0, `${row.path}/${row.stores}/${row.inFlight} ${figure} = ${String(value)}`).toBe(true);
      }
      // Every path is also timed with what the design adds to the raw parts (the floor), and every such call was checked.
      for (const figure of ['signedP50Ms', 'signedPerSecond', 'p50RatioToSigned', 'rateRatioToSigned']) {
        const value = row[figure];
        expect(typeof value === 'number' && Number.isFinite(value) && value > 0, `${row.path}/${row.stores}/${row.inFlight} ${figure} = ${String(value)}`).toBe(true);
      }
      expect(row['signedFailures'], `${row.path}/${row.stores}/${row.inFlight}`).toBe(0);
    }
    // The summary table names every path.
    for (const label of ['| real time |', '| queue one-way |', '| queue request/reply |']) expect(stdout).toContain(label);
  }, 240_000);
});
