import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { XMLValidator } from 'fast-xml-parser';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';

const root = path.resolve(import.meta.dirname, '../..');
let directory: string;

beforeEach(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'storelink-cli-'));
});

afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text), cwd: root });
  return { code, stdout, stderr };
}

async function policyFile(content: string): Promise<string> {
  const file = path.join(directory, 'policy.json');
  await writeFile(file, content);
  return file;
}

describe('storelink chart', () => {
  it('prints the default chart in Mermaid with every state', async () => {
    const { code, stdout, stderr } = await run('chart', 'storeLink', '--format', 'mermaid');
    expect(code).toBe(0);
    expect(stderr).toBe('');
    expect(stdout).toMatch(/^stateDiagram-v2\n/);
    for (const state of ['starting', 'disabled', 'healthy', 'tripped', 'probing']) expect(stdout).toContain(`as ${state}`);
  });

  it('defaults to the storeLink chart in Mermaid', async () => {
    expect((await run('chart')).stdout).toBe((await run('chart', 'storeLink', '-f', 'mermaid')).stdout);
  });

  it('prints SCXML that parses as XML', async () => {
    const { code, stdout } = await run('chart', 'storeLink', '--format', 'scxml');
    expect(code).toBe(0);
    expect(XMLValidator.validate(stdout)).toBe(true);
    expect(stdout).toContain('<scxml xmlns="http://www.w3.org/2005/07/scxml"');
  });

  it('prints the chart model as JSON', async () => {
    const { code, stdout } = await run('chart', '--format', 'json');
    expect(code).toBe(0);
    const model = JSON.parse(stdout) as { id: string; states: { id: string }[] };
    expect(model.id).toBe('storeLink');
    expect(model.states.map((state) => state.id)).toContain('probing');
  });

  it('renders a chart module given by path, and writes to a file with --output', async () => {
    const output = path.join(directory, 'chart.mmd');
    const { code } = await run('chart', 'samples/policies/maintenanceWindow.ts', '--output', output);
    expect(code).toBe(0);
    expect(await readFile(output, 'utf8')).toContain('inService --> maintenance : after untilWindowOpens');
  });

  it('picks one machine of several with #exportName, and refuses to guess', async () => {
    expect((await run('chart', 'test/fixtures/twoCharts.machine.ts#secondMachine')).stdout).toContain('as b');
    const ambiguous = await run('chart', 'test/fixtures/twoCharts.machine.ts');
    expect(ambiguous.code).toBe(1);
    expect(ambiguous.stderr).toContain('several machines (firstMachine, secondMachine)');
    const notMachine = await run('chart', 'test/fixtures/twoCharts.machine.ts#notAMachine');
    expect(notMachine.code).toBe(1);
    expect(notMachine.stderr).toContain('is not an xstate machine');
  });

  it.each([
    [['chart', 'noSuchChart'], 'neither a built-in chart'],
    [['chart', '--format', 'svg'], "argument 'svg' is invalid"],
    [['chart', '--colour'], "unknown option '--colour'"],
    [['frobnicate'], "unknown command 'frobnicate'"],
  ])('exits 2 on a usage error: %j', async (argv, message) => {
    const { code, stdout, stderr } = await run(...argv);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toContain(message);
  });
});

describe('storelink policy check', () => {
  it('accepts the sample policy with the default chart and with the maintenance-window chart', async () => {
    const withDefault = await run('policy', 'check', 'samples/policies/policy.json');
    expect(withDefault.code).toBe(0);
    expect(withDefault.stdout).toContain('valid (3 operation types');
    expect(withDefault.stdout).toContain('chart storeLink: honours the routing contract');
    const withCustom = await run('policy', 'check', 'samples/policies/policy.json', '--chart', 'samples/policies/maintenanceWindow.ts');
    expect(withCustom.code).toBe(0);
    expect(withCustom.stdout).toContain('maintenance');
  });

  it('exits 1 naming the field of a broken policy', async () => {
    const file = await policyFile(JSON.stringify({ operations: { 'stock.query': { fallback: 'cache' } } }));
    const { code, stdout, stderr } = await run('policy', 'check', file);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toContain(`${file}: invalid policy: operations["stock.query"].fallback`);
    expect(stderr).toContain('expected one of "queue"|"reject"|"cached"');
  });

  it('exits 1 with the line and column of invalid JSON', async () => {
    const file = await policyFile('{\n  "link": { "failureThreshold": 3, }\n}');
    const { code, stderr } = await run('policy', 'check', file);
    expect(code).toBe(1);
    expect(stderr).toMatch(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2:\\d+: not valid JSON`));
  });

  it('exits 1 listing the broken rules of a chart', async () => {
    const file = await policyFile('{}');
    const { code, stderr } = await run('policy', 'check', file, '--chart', 'test/fixtures/unknownTag.machine.ts');
    expect(code).toBe(1);
    expect(stderr).toContain('breaks the routing contract');
    expect(stderr).toContain('[known-tags] state "open" has tag "turbo"');
  });

  it('exits 1 when the pure chart is checked without the clock it needs', async () => {
    const file = await policyFile('{}');
    const { code, stderr } = await run('policy', 'check', file, '--chart', 'samples/policies/maintenanceWindow.machine.ts');
    expect(code).toBe(1);
    expect(stderr).toContain('"insideWindow" not provided');
  });

  it.each([
    [['policy', 'check', 'no/such/policy.json'], 'no such file'],
    [['policy', 'check'], "missing required argument 'policy'"],
    [['policy', 'check', 'samples/policies/policy.json', '--chart', 'nope.ts'], 'neither a built-in chart'],
  ])('exits 2 on a usage error: %j', async (argv, message) => {
    const { code, stderr } = await run(...argv);
    expect(code).toBe(2);
    expect(stderr).toContain(message);
  });
});

describe('the storelink executable', () => {
  const execFileAsync = promisify(execFile);

  it('runs as a process: help on stdout, exit codes from the shell', async () => {
    const cli = ['--import', 'tsx', path.join(root, 'src/cli/main.ts')];
    const help = await execFileAsync(process.execPath, [...cli, '--help'], { cwd: root });
    expect(help.stdout).toContain('Usage: storelink');
    expect(help.stdout).toContain('chart');
    const failure = await execFileAsync(process.execPath, [...cli, 'chart', 'nope'], { cwd: root }).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );
    expect(failure?.code).toBe(2);
    expect(failure?.stderr).toContain('storelink: "nope" is neither a built-in chart');
  });
});
