/**
 * `npm run bench`: every bench/*.bench.ts in turn (name order), each in its own Node process with the tsx loader, its
 * output passed through; the `BENCH_JSON {...}` lines they print are collected into one summary, printed last as
 * `BENCH_SUMMARY {...}` (and written to the file named by BENCH_SUMMARY_FILE, if set). A bench that fails is reported
 * and the others still run; the exit code says whether all passed.
 *
 *   node --import tsx bench/run.ts [name-filter...]     e.g. `npm run bench -- wholePath`
 */
import { spawn } from 'node:child_process';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const PREFIX = 'BENCH_JSON ';
const here = path.dirname(fileURLToPath(import.meta.url));
const filters = process.argv.slice(2);

interface BenchRun {
  file: string;
  exitCode: number | null;
  durationInMs: number;
  results: unknown[];
}

/** The JSON of a `BENCH_JSON ` line, or undefined for any other line. */
export function benchJsonOf(line: string): unknown {
  if (!line.startsWith(PREFIX)) return undefined;
  try {
    return JSON.parse(line.slice(PREFIX.length)) as unknown;
  } catch {
    return undefined;
  }
}

async function runOne(file: string): Promise<BenchRun> {
  const started = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, file)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const results: unknown[] = [];
  const lines = createInterface({ input: child.stdout });
  lines.on('line', (line) => {
    process.stdout.write(`${line}\n`);
    const result = benchJsonOf(line);
    if (result !== undefined) results.push(result);
  });
  const exitCode = await new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { file, exitCode, durationInMs: performance.now() - started, results };
}

const files = (await readdir(here)).filter((name) => name.endsWith('.bench.ts') && (filters.length === 0 || filters.some((filter) => name.includes(filter)))).sort();
const runs: BenchRun[] = [];
const started = performance.now();
for (const file of files) {
  process.stdout.write(`\n=== ${file}\n`);
  const run = await runOne(file);
  runs.push(run);
  process.stdout.write(`=== ${file}: ${run.exitCode === 0 ? 'done' : `FAILED (exit ${run.exitCode})`} in ${(run.durationInMs / 1000).toFixed(1)} s\n`);
}
const summary = {
  node: process.version,
  totalInSeconds: Math.round((performance.now() - started) / 100) / 10,
  benches: runs.map((run) => ({ file: run.file, ok: run.exitCode === 0, seconds: Math.round(run.durationInMs / 100) / 10, results: run.results })),
};
process.stdout.write('\n| bench | result | seconds |\n| --- | --- | --- |\n');
for (const bench of summary.benches) process.stdout.write(`| ${bench.file} | ${bench.ok ? 'ok' : 'FAILED'} | ${bench.seconds} |\n`);
process.stdout.write(`total ${summary.totalInSeconds} s\n`);
process.stdout.write(`BENCH_SUMMARY ${JSON.stringify(summary)}\n`);
const summaryFile = process.env['BENCH_SUMMARY_FILE'];
if (summaryFile !== undefined) await writeFile(summaryFile, `${JSON.stringify(summary, null, 2)}\n`);
process.exitCode = runs.every((run) => run.exitCode === 0) ? 0 : 1;
