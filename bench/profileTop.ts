/**
 * The top frames of a V8 CPU profile (`node --cpu-prof`), by self time and by total time, as a Markdown table: the
 * whole-path benchmark's BENCH_PROFILE=<dir> writes one per cloud and store process.
 *
 *   node --import tsx bench/profileTop.ts <file.cpuprofile> [rows] [--skip-ms <n>] [--until-ms <n>] [--callers <text>]
 *
 * --skip-ms leaves out the first n ms of samples (a process's start: module loading under tsx), --until-ms those after n ms; --callers adds a
 * table of the frames that called any frame whose name contains the text, by the time spent below them.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const args = process.argv.slice(2);
const optionOf = (name: string): string | undefined => {
  const at = args.indexOf(name);
  if (at < 0) return undefined;
  const value = args[at + 1];
  if (value === undefined) throw new TypeError(`${name} needs a value`);
  args.splice(at, 2);
  return value;
};
const skipMs = Number(optionOf('--skip-ms') ?? 0);
const untilMs = Number(optionOf('--until-ms') ?? Number.POSITIVE_INFINITY);
const callersOf = optionOf('--callers');
const file = args[0];
if (file === undefined || !Number.isFinite(skipMs) || Number.isNaN(untilMs)) {
  throw new TypeError('usage: profileTop.ts <file.cpuprofile> [rows] [--skip-ms <n>] [--until-ms <n>] [--callers <text>]');
}
const rows = Number(args[1] ?? 25);
const profile = JSON.parse(await readFile(file, 'utf8')) as Profile;

const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const parentOf = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);

/** A function's name and place, shortened to the package or the repository path. */
function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const name = functionName.length > 0 ? functionName : '(anonymous)';
  if (url.length === 0) return name;
  const modules = url.lastIndexOf('node_modules/');
  const where = modules >= 0 ? url.slice(modules + 'node_modules/'.length) : url.includes('/src/') ? url.slice(url.indexOf('/src/') + 1) : path.basename(url);
  return `${name} ${where}:${lineNumber + 1}`;
}

const self = new Map<string, number>();
const total = new Map<string, number>();
const callers = new Map<string, number>();
let all = 0;
let elapsed = 0;
for (let i = 0; i < profile.samples.length; i += 1) {
  const delta = (profile.timeDeltas[i] ?? 0) / 1000;
  elapsed += delta;
  if (elapsed < skipMs || elapsed > untilMs) continue;
  all += delta;
  let id: number | undefined = profile.samples[i];
  const leaf = frameName(byId.get(id!)!);
  self.set(leaf, (self.get(leaf) ?? 0) + delta);
  const seen = new Set<string>();
  let below: string | undefined;
  while (id !== undefined) {
    const name = frameName(byId.get(id)!);
    if (!seen.has(name)) {
      seen.add(name);
      total.set(name, (total.get(name) ?? 0) + delta);
    }
    // The first frame above the matched one (nearest the leaf) that does not match is its caller.
    if (callersOf !== undefined) {
      if (name.includes(callersOf)) below = name;
      else if (below !== undefined) {
        callers.set(`${name} → ${below}`, (callers.get(`${name} → ${below}`) ?? 0) + delta);
        below = undefined;
      }
    }
    id = parentOf.get(id);
  }
}
const idle = self.get('(idle)') ?? 0;
const busy = all - idle;
const table = (title: string, figures: Map<string, number>) => {
  console.log(`\n${title} (${path.basename(file)}: ${(all / 1000).toFixed(1)} s sampled, ${(busy / 1000).toFixed(1)} s busy)`);
  console.log('| ms | % of busy | frame |\n| --- | --- | --- |');
  const skip = new Set(['(idle)', '(root)', '(program)']);
  for (const [name, ms] of [...figures].filter(([name]) => !skip.has(name)).sort((a, b) => b[1] - a[1]).slice(0, rows)) {
    console.log(`| ${ms.toFixed(0)} | ${((ms / busy) * 100).toFixed(1)} | ${name.replaceAll('|', '\\|')} |`);
  }
};
table('self time', self);
table('total time', total);
if (callersOf !== undefined) table(`callers of frames matching "${callersOf}"`, callers);
