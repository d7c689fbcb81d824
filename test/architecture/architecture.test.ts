/**
 * Proves that each rule of architecture.config.js can fail: small snippets at virtual paths are linted with the
 * project's own ESLint config, and every forbidden one must be reported by the rule that owns it while the allowed ones
 * report nothing. A rule that silently stopped matching (a renamed folder, a resolver that no longer maps `.js` to
 * `.ts`) fails here instead of letting the architecture erode unnoticed.
 */
import { ESLint } from 'eslint';
import { fileURLToPath, pathToFileURL } from 'node:url';
import tseslint from 'typescript-eslint';
import { beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

// One instance for the whole file: building the config and warming the TypeScript resolver is most of the cost. The
// virtual files are not in the TypeScript project, so type-aware parsing is off for them; no architecture rule needs
// types.
const eslint = new ESLint({ cwd: ROOT, overrideConfig: [{ files: ['**/*.ts'], ...tseslint.configs.disableTypeChecked }] });

interface Problem {
  ruleId: string | null;
  message: string;
}

async function lint(code: string, filePath: string): Promise<Problem[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return (result?.messages ?? []).map(({ ruleId, message }) => ({ ruleId, message }));
}

const importOf = (source: string) => `import { thing } from '${source}';\nexport const used = thing;\n`;
const typeImportOf = (source: string) => `import type { Thing } from '${source}';\nexport type Used = Thing;\n`;

interface Part {
  name: string;
  unrestricted?: boolean;
}

beforeAll(async () => {
  await lint(importOf('../core/errors.js'), 'src/cloud/warmUp.ts');
}, 60_000);

describe('arrows between parts', () => {
  // [part the file belongs to, file, import]; each must be refused with that part's message.
  const forbidden: [string, string, string][] = [
    // Cloud and store know nothing of each other (unchecked before the declaration).
    ['cloud', 'src/cloud/virtual.ts', '../store/storeAgent.js'],
    ['cloud', 'src/cloud/virtual.ts', '../store/ledger.js'],
    ['store', 'src/store/virtual.ts', '../cloud/dispatcher.js'],
    // Nor of the emulators (unchecked before).
    ['cloud', 'src/cloud/virtual.ts', '../emulator/relay/index.js'],
    ['cloud', 'src/cloud/virtual.ts', '../emulator/index.js'],
    ['store', 'src/store/virtual.ts', '../emulator/relay/index.js'],
    ['store', 'src/store/virtual.ts', '../emulator/servicebus/index.js'],
    // The two channels know nothing of each other, nor of their users (unchecked before).
    ['channel-relay', 'src/channels/relay/virtual.ts', '../servicebus/serviceBusConnection.js'],
    ['channel-servicebus', 'src/channels/servicebus/virtual.ts', '../relay/relaySender.js'],
    ['channel-relay', 'src/channels/relay/virtual.ts', '../../cloud/dispatcher.js'],
    ['channel-servicebus', 'src/channels/servicebus/virtual.ts', '../../store/outbox.js'],
    ['channel-servicebus', 'src/channels/servicebus/virtual.ts', '../../emulator/servicebus/index.js'],
    // What the channels share about the network knows neither channel.
    ['channel-network', 'src/channels/network/virtual.ts', '../relay/relaySender.js'],
    ['channel-network', 'src/channels/network/virtual.ts', '../servicebus/serviceBusConnection.js'],
    // The store's files do not talk to the network.
    ['store-state', 'src/store/ledger.ts', '../channels/servicebus/serviceBusConnection.js'],
    // The emulators stand alone, and apart from each other.
    ['emulator-relay', 'src/emulator/relay/virtual.ts', '../servicebus/index.js'],
    ['emulator-servicebus', 'src/emulator/servicebus/virtual.ts', '../relay/index.js'],
    ['emulator-relay', 'src/emulator/relay/virtual.ts', '../../channels/relay/relaySender.js'],
    ['emulator-servicebus', 'src/emulator/servicebus/virtual.ts', '../../../machines/storeLink.machine.js'],
    ['emulator', 'src/emulator/virtual.ts', '../cloud/dispatcher.js'],
    // The development certificates know no emulator.
    ['emulator-tls', 'src/emulator/tls/virtual.ts', '../servicebus/index.js'],
    // src/core depends on nothing.
    ['core', 'src/core/virtual.ts', '../channels/relay/relaySender.js'],
    ['core', 'src/core/virtual.ts', '../../machines/storeLink.machine.js'],
    // Charts import only types from src/core.
    ['machines', 'machines/virtual.machine.ts', '../src/cloud/dispatcher.js'],
    ['machines', 'machines/virtual.machine.ts', '../src/core/errors.js'],
    ['machines', 'samples/policies/virtual.machine.ts', '../../src/store/executor.js'],
    // Chart tooling runs no link.
    ['charts', 'src/charts/virtual.ts', '../cloud/dispatcher.js'],
    ['charts', 'src/charts/virtual.ts', '../store/storeAgent.js'],
    // The doctor tries connections through the channels; it knows nothing of the store, the cloud or the emulators.
    ['doctor', 'src/doctor/virtual.ts', '../store/storeAgent.js'],
    ['doctor', 'src/doctor/virtual.ts', '../emulator/index.js'],
    // Nothing imports a composition root.
    ['cloud', 'src/cloud/virtual.ts', '../cli/program.js'],
    ['demo', 'src/demo/virtual.ts', '../cli/program.js'],
    ['store', 'src/store/virtual.ts', '../demo/runDemo.js'],
    // The public surface leaves out the emulators (their own entry) and the CLI.
    ['library', 'src/index.ts', './emulator/index.js'],
    ['library', 'src/index.ts', './cli/program.js'],
    // Leaves stay leaves.
    ['package-root', 'src/packageRoot.ts', './core/errors.js'],
    ['user-modules', 'src/userModules.ts', './store/storeModule.js'],
    ['directory-lock', 'src/directoryLock.ts', './store/ledger.js'],
    // Samples are a user's code: no channel or emulator directly.
    ['samples', 'samples/virtual.ts', '../src/channels/relay/relaySender.js'],
    ['samples', 'samples/virtual.ts', '../src/emulator/index.js'],
    ['cli', 'src/cli/virtual.ts', '../emulator/relay/index.js'],
    // The console runs in a browser: it reaches the cloud over HTTP only.
    ['console', 'console/src/virtual.ts', '../../src/cloud/httpApi.js'],
    ['console', 'console/src/virtual.ts', '../../src/core/errors.js'],
    // The database layer knows SQL and drivers, not the cloud's other parts nor the channels.
    ['cloud-database', 'src/cloud/database/virtual.ts', '../dispatcher.js'],
    ['cloud-database', 'src/cloud/database/virtual.ts', '../../channels/servicebus/serviceBusConnection.js'],
  ];

  it.each(forbidden)('%s: %s may not import %s', async (part, filePath, source) => {
    const problems = await lint(importOf(source), filePath);
    expect(problems).toEqual([{ ruleId: 'boundaries/dependencies', message: expect.stringContaining(`${part} (`) }]);
    expect(problems[0]?.message).toContain('architecture.config.js');
  });

  it('refuses a value import where only types are allowed, and accepts the type import', async () => {
    expect(await lint(importOf('../src/core/policy.js'), 'machines/virtual.machine.ts')).toMatchObject([
      { ruleId: 'boundaries/dependencies' },
    ]);
    expect(await lint(typeImportOf('../src/core/policy.js'), 'machines/virtual.machine.ts')).toEqual([]);
  });

  const allowed: [string, string][] = [
    ['src/cloud/virtual.ts', '../core/errors.js'],
    ['src/cloud/virtual.ts', './storeLinks.js'],
    ['src/cloud/virtual.ts', '../channels/relay/relaySender.js'],
    ['src/cloud/virtual.ts', '../channels/servicebus/serviceBusConnection.js'],
    ['src/cloud/virtual.ts', '../../machines/storeLink.machine.js'],
    ['src/store/virtual.ts', '../channels/relay/relayListener.js'],
    ['src/store/virtual.ts', './ledger.js'],
    ['src/store/virtual.ts', '../userModules.js'],
    ['src/channels/relay/virtual.ts', '../../../machines/relayListener.machine.js'],
    ['src/channels/relay/virtual.ts', '../../core/sas.js'],
    ['src/channels/relay/virtual.ts', '../network/proxy.js'],
    ['src/channels/servicebus/virtual.ts', '../network/tlsTrust.js'],
    ['src/emulator/relay/virtual.ts', '../../core/sas.js'],
    ['src/emulator/virtual.ts', './servicebus/index.js'],
    ['src/emulator/virtual.ts', './tls/index.js'],
    ['src/charts/virtual.ts', '../../machines/storeLink.machine.js'],
    ['src/demo/virtual.ts', '../emulator/relay/index.js'],
    ['src/demo/virtual.ts', '../store/ledger.js'],
    ['src/cli/virtual.ts', '../demo/runDemo.js'],
    ['src/cli/virtual.ts', '../emulator/startEmulators.js'],
    ['src/index.ts', './cloud/dispatcher.js'],
    ['samples/virtual.ts', '../src/cloud/dispatcher.js'],
    ['samples/policies/virtual.ts', './maintenanceWindow.machine.js'],
    ['test/architecture/virtual.test.ts', '../../src/emulator/relay/index.js'],
    ['bench/virtual.bench.ts', '../src/store/ledger.js'],
  ];

  it.each(allowed)('%s may import %s', async (filePath, source) => {
    expect(await lint(importOf(source), filePath)).toEqual([]);
  });

  it('refuses a file that belongs to no part', async () => {
    expect(await lint('export const loose = 1;\n', 'scripts/virtual.ts')).toMatchObject([{ ruleId: 'boundaries/no-unknown-files' }]);
  });

  it('has a forbidden arrow above for every part that has rules', async () => {
    const declaration = (await import(pathToFileURL(`${ROOT}architecture.config.js`).href)) as { PARTS: Part[] };
    const restricted = declaration.PARTS.filter(({ unrestricted }) => !unrestricted).map(({ name }) => name);
    expect(new Set(forbidden.map(([part]) => part))).toEqual(new Set(restricted));
  });
});

describe('packages only some parts may import', () => {
  const forbidden: [string, string][] = [
    ['src/channels/relay/virtual.ts', '@azure/service-bus'],
    ['src/cloud/virtual.ts', '@azure/service-bus'],
    ['samples/virtual.ts', '@azure/service-bus'],
    ['src/store/virtual.ts', 'hyco-https'],
    ['src/cloud/virtual.ts', 'hyco-https'],
    ['src/cloud/virtual.ts', 'lowdb'],
    ['src/cloud/linkStore.ts', 'lowdb'],
    ['src/store/virtual.ts', 'lowdb'],
    ['src/store/virtual.ts', 'lowdb/node'],
    ['samples/store-click-and-collect/virtual.ts', 'lowdb'],
    ['src/emulator/relay/virtual.ts', 'rhea'],
    ['src/channels/servicebus/virtual.ts', 'rhea'],
    ['src/store/virtual.ts', 'xstate'],
    ['src/emulator/relay/virtual.ts', 'xstate'],
    ['src/core/virtual.ts', 'xstate'],
    ['src/doctor/virtual.ts', '@azure/service-bus'],
    ['src/doctor/virtual.ts', 'hyco-https'],
    ['src/cloud/virtual.ts', 'pg'],
    ['src/cloud/virtual.ts', '@electric-sql/pglite'],
    ['src/cloud/virtual.ts', 'kysely'],
    ['src/cli/virtual.ts', 'pg'],
  ];

  it.each(forbidden)('%s may not import %s', async (filePath, source) => {
    expect(await lint(importOf(source), filePath)).toEqual([
      { ruleId: 'boundaries/dependencies', message: expect.stringMatching(new RegExp(`may import ${source.split('/')[0]}`)) },
    ]);
  });

  it('refuses type imports of an owned package too: Azure SDK types never leak out of src/channels', async () => {
    expect(await lint(typeImportOf('@azure/service-bus'), 'src/cloud/virtual.ts')).toMatchObject([
      { ruleId: 'boundaries/dependencies', message: expect.stringContaining('only channel-servicebus may import @azure/service-bus') },
    ]);
  });

  // Parts with an allow-list of packages and builtins: anything else is refused.
  const outsideAllowList: [string, string][] = [
    ['src/core/virtual.ts', 'rxjs'],
    ['src/core/virtual.ts', 'pino'],
    ['src/core/virtual.ts', 'node:fs'],
    ['src/core/virtual.ts', 'node:http'],
    ['machines/virtual.machine.ts', 'rxjs'],
    ['machines/virtual.machine.ts', 'zod'],
    ['machines/virtual.machine.ts', 'node:fs'],
    ['machines/virtual.machine.ts', 'fs'],
    ['machines/virtual.machine.ts', 'node:timers/promises'],
    ['machines/virtual.machine.ts', 'node:crypto'],
  ];

  it.each(outsideAllowList)('%s may not import %s', async (filePath, source) => {
    expect(await lint(importOf(source), filePath)).toMatchObject([{ ruleId: 'boundaries/dependencies' }]);
  });

  const allowed: [string, string][] = [
    ['src/channels/servicebus/virtual.ts', '@azure/service-bus'],
    ['src/channels/relay/virtual.ts', 'hyco-https'],
    ['src/channels/relay/virtual.ts', 'xstate'],
    ['src/store/segmentedStore.ts', 'lowdb'],
    ['src/store/ledger.ts', 'lowdb/node'],
    ['samples/store-click-and-collect/inventory.ts', 'lowdb'],
    ['src/emulator/servicebus/virtual.ts', 'rhea'],
    ['src/cloud/virtual.ts', 'xstate'],
    ['src/charts/virtual.ts', 'xstate'],
    ['machines/virtual.machine.ts', 'xstate'],
    ['src/core/virtual.ts', 'zod'],
    ['src/core/virtual.ts', 'node:crypto'],
    ['src/cloud/virtual.ts', 'rxjs'],
    ['src/cli/virtual.ts', 'commander'],
    ['src/emulator/relay/virtual.ts', 'ws'],
    ['test/virtual.test.ts', '@azure/service-bus'],
    ['bench/virtual.bench.ts', 'lowdb'],
    ['src/cloud/database/virtual.ts', 'pg'],
    ['src/cloud/database/virtual.ts', '@electric-sql/pglite'],
    ['src/cloud/database/virtual.ts', 'kysely'],
  ];

  it.each(allowed)('%s may import %s', async (filePath, source) => {
    expect(await lint(importOf(source), filePath)).toEqual([]);
  });
});

describe('charts own no clock, timer, randomness or process', () => {
  const forbidden: [string, string, string][] = [
    ['no-restricted-globals', 'Date.now', 'export const at = Date.now();\n'],
    ['no-restricted-globals', 'new Date()', 'export const at = new Date().getTime();\n'],
    ['no-restricted-globals', 'performance.now', 'export const at = performance.now();\n'],
    ['no-restricted-globals', 'setTimeout', 'setTimeout(() => undefined, 10);\n'],
    ['no-restricted-globals', 'setInterval', 'setInterval(() => undefined, 10);\n'],
    ['no-restricted-globals', 'setImmediate', 'setImmediate(() => undefined);\n'],
    ['no-restricted-globals', 'queueMicrotask', 'queueMicrotask(() => undefined);\n'],
    ['no-restricted-globals', 'process', "export const mode = process.env['MODE'];\n"],
    ['no-restricted-globals', 'crypto.randomUUID', 'export const id = crypto.randomUUID();\n'],
    ['no-restricted-globals', 'globalThis', 'globalThis.setTimeout(() => undefined, 10);\n'],
    ['no-restricted-globals', 'fetch', "export const reply = fetch('https://example.invalid/');\n"],
    ['no-restricted-properties', 'Math.random', 'export const jitter = Math.random();\n'],
    ['no-restricted-syntax', 'randomUUID, however it came', 'declare const ids: { randomUUID(): string };\nexport const id = ids.randomUUID();\n'],
    ['boundaries/dependencies', 'randomUUID from node:crypto', "import { randomUUID } from 'node:crypto';\nexport const id = randomUUID();\n"],
  ];

  it.each(forbidden)('%s refuses %s in machines/', async (ruleId, _what, code) => {
    const problems = await lint(code, 'machines/virtual.machine.ts');
    expect(problems.map((problem) => problem.ruleId)).toContain(ruleId);
  });

  it('holds the sample charts to the same rule, and not the code around them', async () => {
    const code = 'export const at = Date.now();\n';
    expect(await lint(code, 'samples/policies/virtual.machine.ts')).toMatchObject([{ ruleId: 'no-restricted-globals' }]);
    expect(await lint(code, 'samples/policies/virtual.clock.ts')).toEqual([]);
  });

  it('accepts a chart that keeps time with `after` and reads deadlines from context', async () => {
    const chart = [
      "import { setup } from 'xstate';",
      "import type { LinkPolicy } from '../src/core/policy.js';",
      'export const virtualMachine = setup({',
      '  types: { context: {} as { policy: LinkPolicy; deadline: number } },',
      '  delays: { cooldown: ({ context }) => context.policy.openCooldownInMs },',
      "}).createMachine({ initial: 'open', states: { open: { after: { cooldown: 'closed' } }, closed: {} } });",
      '',
    ].join('\n');
    expect(await lint(chart, 'machines/virtual.machine.ts')).toEqual([]);
  });
});
