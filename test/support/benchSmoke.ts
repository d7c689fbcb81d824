/** Runs one of `bench/*.bench.ts` in its smoke mode (BENCH_SMOKE=1) as its own process, for the tests that keep it from rotting. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { projectRoot } from './cliProcess.js';

export async function runBenchSmoke(file: string): Promise<{ exitCode: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'bench', file)], {
    cwd: projectRoot,
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
