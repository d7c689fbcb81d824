/**
 * The instances benchmark in its smoke mode (tiny counts, 2 stores), so it never rots: every path at every
 * concurrency through 1 and through 3 `storelink cloud` processes, with finite, positive figures, every call answered
 * as asked, and the CPU of each process. No timing threshold: the figures of a smoke run mean nothing. Skipped, with
 * the reason, exactly where the multi-instance scenario skips: when embedded PostgreSQL cannot start here.
 */
import { describe, expect, it } from 'vitest';
import type { Measurement } from '../../bench/wholePath/protocol.js';
import { runBenchSmoke } from '../support/benchSmoke.js';

interface Row extends Measurement {
  path: string;
  inFlight: number;
  instances: number;
  cpu: Record<string, number>;
  machineCpu: number;
}

interface Report {
  bench: string;
  smoke: boolean;
  skipped?: string;
  stores: number;
  cpus: number;
  rows: Row[];
  scaling: { path: string; inFlight: number; p50Ratio: number; p99Ratio: number; rateRatio: number }[];
}

const isPositive = (value: unknown): boolean => typeof value === 'number' && Number.isFinite(value) && value > 0;

describe('the instances benchmark, smoke mode', () => {
  it('measures real time and queue request/reply through 1 and 3 cloud instances, sequentially and 32 and 96 in flight, with no failed call', async (context) => {
    const { exitCode, stdout, stderr } = await runBenchSmoke('instances.bench.ts');
    const line = stdout.split('\n').find((candidate) => candidate.startsWith('BENCH_JSON '));
    expect(line, `${stdout}\n${stderr}`).toBeDefined();
    const report = JSON.parse(line!.slice('BENCH_JSON '.length)) as Report;
    expect(report.bench).toBe('instances');
    expect(report.smoke).toBe(true);
    if (report.skipped !== undefined) {
      expect(exitCode).toBe(0);
      context.skip(report.skipped);
    }
    expect(exitCode, stderr).toBe(0);
    expect(report.stores).toBe(2);
    expect(report.cpus).toBeGreaterThan(0);

    const keys = report.rows.map((row) => `${row.path}/${row.instances}/${row.inFlight}`).sort();
    const expected = ['realtime', 'requestreply'].flatMap((name) => [1, 3].flatMap((instances) => [1, 32, 96].map((inFlight) => `${name}/${instances}/${inFlight}`))).sort();
    expect(keys).toEqual(expected);
    for (const row of report.rows) {
      const where = `${row.path}/${row.instances}/${row.inFlight}`;
      expect(row.failures, `${where}: ${row.lastFailure ?? ''}`).toBe(0);
      expect(row.count, where).toBeGreaterThan(0);
      for (const figure of ['p50Ms', 'p99Ms', 'perSecond'] as const) expect(isPositive(row[figure]), `${where} ${figure} = ${String(row[figure])}`).toBe(true);
      // The CPU of every process, the three instances included (only on Linux, where /proc has it).
      const processes = ['driver', 'stores-1', 'stores-2', 'emulators', 'postgres', 'cloud-a', 'cloud-b', 'cloud-c'];
      expect(Object.keys(row.cpu).sort(), where).toEqual(processes.sort());
      if (process.platform === 'linux') {
        for (const [name, cores] of Object.entries(row.cpu)) expect(Number.isFinite(cores) && cores >= 0, `${where} cpu ${name} = ${cores}`).toBe(true);
        expect(Number.isFinite(row.machineCpu) && row.machineCpu >= 0, `${where} machine cpu = ${row.machineCpu}`).toBe(true);
      }
    }
    const scaling = report.scaling.map((entry) => `${entry.path}/${entry.inFlight}`).sort();
    expect(scaling).toEqual(['realtime', 'requestreply'].flatMap((name) => [1, 32, 96].map((inFlight) => `${name}/${inFlight}`)).sort());
    for (const entry of report.scaling) {
      for (const figure of ['p50Ratio', 'p99Ratio', 'rateRatio'] as const) expect(isPositive(entry[figure]), `${entry.path}/${entry.inFlight} ${figure}`).toBe(true);
    }
    // The table names every path, and the CPU note says what limits the figure.
    for (const label of ['| real time |', '| queue request/reply |', 'CPU per process']) expect(stdout).toContain(label);
    expect(stdout).not.toContain('FAILED CALLS');
  }, 240_000);
});
