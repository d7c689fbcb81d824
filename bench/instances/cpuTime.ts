/**
 * CPU time of the benchmark's processes, read from outside (`/proc/<pid>/stat`), so the `storelink cloud` processes
 * run exactly as an operator starts them, with nothing added to report it. PostgreSQL is a tree: the postmaster and
 * one backend per connection, all counted together. And the whole machine's busy time (/proc/stat), so that what
 * other programs take of the cores shows too. Linux only; elsewhere every figure is NaN and the table says so.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

let ticksPerSecond: number | undefined;
function clockTicks(): number {
  // USER_HZ: 100 on every Linux we know of, but asked rather than assumed.
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return ticksPerSecond;
}

interface ProcStat {
  ppid: number;
  /** utime + stime of the process itself, and cutime + cstime of its children that have exited and been waited for. */
  ownTicks: number;
  childTicks: number;
}

function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold spaces: the fields that follow start after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
  return { ppid: Number(fields[1]), ownTicks: Number(fields[11]) + Number(fields[12]), childTicks: Number(fields[13]) + Number(fields[14]) };
}

/** CPU seconds used so far by one process (NaN once it is gone or without /proc). */
export function processCpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  const stat = procStat(pid);
  return stat === undefined ? Number.NaN : stat.ownTicks / clockTicks();
}

/** CPU seconds used so far by a process and its live children (a PostgreSQL server and its backends), and the exited ones it reaped. */
export function treeCpuSeconds(rootPid: number | undefined): number {
  if (rootPid === undefined) return Number.NaN;
  const root = procStat(rootPid);
  if (root === undefined) return Number.NaN;
  let ticks = root.ownTicks + root.childTicks;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = procStat(Number(entry));
    if (stat?.ppid === rootPid) ticks += stat.ownTicks;
  }
  return ticks / clockTicks();
}

/** The postmaster's pid, from the `postmaster.pid` file PostgreSQL keeps in its data directory. */
export function postmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(`${dataDir}/postmaster.pid`, 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds the whole machine has been busy so far, all cores and all processes together (ours and anyone's). */
export function machineBusyCpuSeconds(): number {
  try {
    // The first line of /proc/stat: "cpu  user nice system idle iowait irq softirq steal …", in clock ticks.
    const ticks = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = ticks.slice(0, 8).reduce((sum, value) => sum + value, 0);
    return (total - ticks[3]! - ticks[4]!) / clockTicks();
  } catch {
    return Number.NaN;
  }
}

/** A named set of CPU-time readers; `since()` gives each one's share of one core over the time since `start()`. */
export class CpuMeter {
  readonly #readers: Map<string, () => number>;
  #started = new Map<string, number>();
  #startedAt = 0;

  constructor(readers: Record<string, () => number>) {
    this.#readers = new Map(Object.entries(readers));
  }

  add(name: string, reader: () => number): void {
    this.#readers.set(name, reader);
  }

  delete(name: string): void {
    this.#readers.delete(name);
  }

  start(): void {
    this.#startedAt = performance.now();
    this.#started = new Map([...this.#readers].map(([name, read]) => [name, read()]));
  }

  /** Per process: CPU seconds used per wall second since start() (1 = one core busy all along). */
  since(): Record<string, number> {
    const wallSeconds = (performance.now() - this.#startedAt) / 1000;
    return Object.fromEntries([...this.#readers].map(([name, read]) => [name, (read() - (this.#started.get(name) ?? Number.NaN)) / wallSeconds]));
  }
}
