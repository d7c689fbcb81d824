/**
 * The instances benchmark in its smoke mode (tiny counts, 2 stores), so it never rots: every path at every
 * concurrency through 1 and through 3 `storelink cloud` processes, with finite, positive figures, every call answered
 * as asked, and the CPU of each process. No timing threshold: the figures of a smoke run mean nothing. Skipped, with
 * the reason, exactly where the multi-instance scenario skips: when embedded PostgreSQL cannot start here.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

interface Row {
  path: string;
  inFlight: number;
  instances: number;
  p50Ms: number;
  p99Ms: number;
  perSecond: number;
  count: number;
  failures: number;
  lastFailure?: string;
  cpu: Record<string, number>;
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

async function runSmoke(): Promise<{ exitCode: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'bench', 'instances.bench.ts')], {
    cwd: root,
    env: { ...process.env, BENCH_SMOKE: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const exitCode = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  return { exitCode, stdout, stderr };
}

const isPositive = (value: unknown): boolean => typeof value === 'number' && Number.isFinite(value) && value > 0;

describe('the instances benchmark, smoke mode', () => {
  it('measures real time and queue request/reply through 1 and 3 cloud instances, sequentially and 32 and 96 in flight, with no failed call', async (context) => {
    const { exitCode, stdout, stderr } = await runSmoke();
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
      // The CPU of every process, each instance running included (only on Linux, where /proc has it).
      const processes = ['driver', 'stores-1', 'stores-2', 'emulators', 'postgres', ...['cloud-a', 'cloud-b', 'cloud-c'].slice(0, row.instances)];
      expect(Object.keys(row.cpu).sort(), where).toEqual(processes.sort());
      if (process.platform === 'linux') {
        for (const [name, cores] of Object.entries(row.cpu)) expect(Number.isFinite(cores) && cores >= 0, `${where} cpu ${name} = ${cores}`).toBe(true);
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
