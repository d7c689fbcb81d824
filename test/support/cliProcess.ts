/** Runs the storelink command line as a real process (through tsx), for tests of long-running commands. */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';

export const projectRoot = path.resolve(import.meta.dirname, '../..');

/** Starts `storelink <args>`; the returned stop function SIGKILLs it if it is still running (for afterEach). */
export function startCliProcess(args: readonly string[], env: NodeJS.ProcessEnv = {}): { child: ChildProcessWithoutNullStreams; kill: () => Promise<void> } {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'src/cli/main.ts'), ...args], {
    cwd: projectRoot,
    env: { ...process.env, ...env },
  });
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  };
  return { child, kill };
}

/** The first line the process prints on stdout. */
export async function firstLine(child: ChildProcessWithoutNullStreams): Promise<string> {
  const lines = createInterface({ input: child.stdout });
  const [line] = (await once(lines, 'line')) as [string];
  lines.close();
  return line;
}

/** Sends a signal and resolves with the exit code. */
export async function stopWith(child: ChildProcessWithoutNullStreams, signal: NodeJS.Signals): Promise<number | null> {
  const exited = once(child, 'exit');
  child.kill(signal);
  const [code] = (await exited) as [number | null];
  return code;
}
