// storelink's architecture in one declaration: every part of the code base, the arrows allowed between them, the
// packages only some parts may import, and what keeps a chart pure. eslint.config.js turns all of it into lint rules
// (eslint-plugin-boundaries and the no-restricted-* rules) and test/architecture proves each kind of rule can fail;
// README.md "Architecture" explains it. Change the architecture here, nowhere else.
//
// Anything not allowed below is forbidden: a part may import its own files and the parts in its `uses`; a file that
// matches no part fails lint, so a new folder has to be declared before it can be written.

/**
 * @typedef {object} Part
 * @property {string} name
 * @property {string[]} files   globs from the repository root; a file belongs to the first part that matches it
 * @property {string} role      what the part is for, shown in lint messages
 * @property {string[]} [uses]       parts it may import (its own files always)
 * @property {string[]} [usesTypesOf] parts it may import types from, and nothing else
 * @property {string[]} [packages]   if set, the only third-party packages it may import
 * @property {boolean | string[]} [nodeBuiltins] false: none; a list: only these; default: any
 * @property {boolean} [unrestricted] may import anything: tests, benchmarks and tooling exercise the real parts
 * @property {string} [why]     why the arrows are what they are
 */

/** @type {Part[]} Most specific first: ledger and outbox before the rest of src/store, the emulators' halves before their root. */
export const PARTS = [
  {
    name: 'machines',
    files: ['machines/**', 'samples/**/*.machine.ts'],
    role: 'the state charts: pure xstate definitions, the sample charts too',
    usesTypesOf: ['core'],
    packages: ['xstate'],
    nodeBuiltins: false,
    why: 'a chart is data an architect can replace, check and render: no I/O, no clock, side effects are provided by src/',
  },
  {
    name: 'core',
    files: ['src/core/**'],
    role: 'envelope, policy, message schemas, error codes, SAS tokens, signatures',
    packages: ['zod'],
    nodeBuiltins: ['node:crypto'],
    why: 'the wire contract everything else shares, so it depends on nothing and does no I/O (crypto signs and hashes)',
  },
  {
    name: 'channel-network',
    files: ['src/channels/network/**'],
    role: 'what both channels share about the network: the HTTPS proxy (option or HTTPS_PROXY/NO_PROXY), the extra CA',
    why: 'one reading of the proxy and trust settings for both channels, so the queue and the relay never disagree on a route',
  },
  {
    name: 'channel-servicebus',
    files: ['src/channels/servicebus/**'],
    role: 'queue sender and consumer, dead-letter tooling over @azure/service-bus',
    uses: ['core', 'channel-network'],
    why: 'the only place that knows the Service Bus SDK; its types do not leak out of src/channels',
  },
  {
    name: 'channel-relay',
    files: ['src/channels/relay/**'],
    role: 'relay HTTPS sender and hyco-https listener',
    uses: ['core', 'machines', 'channel-network'],
    why: 'the only place that knows hyco-https; the listener runs its reconnect loop as machines/relayListener.machine.ts',
  },
  {
    name: 'store-state',
    files: ['src/store/ledger.ts', 'src/store/outbox.ts', 'src/store/segmentedStore.ts', 'src/store/segmentFile.ts'],
    role: "the store's durable files: ledger, outbox and the lowdb segments under them",
    uses: ['core'],
    why: 'persistence only: lowdb stays behind the ledger and outbox interfaces, and files never talk to the network',
  },
  {
    name: 'store',
    files: ['src/store/**'],
    role: 'store agent, executor, outbox flusher, store modules',
    uses: ['core', 'store-state', 'channel-servicebus', 'channel-relay', 'user-modules', 'directory-lock'],
    why: 'sees the channels through small interfaces; knows nothing of the cloud or the emulators',
  },
  {
    name: 'cloud-database',
    files: ['src/cloud/database/**'],
    role: "the cloud's PostgreSQL database: connection (pg or the embedded PGlite), migrations, the records' SQL",
    uses: ['core'],
    why: 'the one place that knows the database drivers and the query builder; the rest of the cloud calls its functions',
  },
  {
    name: 'cloud',
    files: ['src/cloud/**'],
    role: 'dispatcher and its parts, link registry, HTTP API, metrics',
    uses: ['core', 'machines', 'channel-servicebus', 'channel-relay', 'cloud-database', 'directory-lock'],
    why: 'routes through the link chart and sees the channels through small interfaces; knows nothing of the store or the emulators',
  },
  {
    name: 'doctor',
    files: ['src/doctor/**'],
    role: '`storelink doctor`: names, ports, TLS, clock and the rights of each key, tried through the channels',
    uses: ['core', 'channel-network', 'channel-servicebus', 'channel-relay'],
    why: 'diagnoses connections the way the channels make them (their proxy and CA rules from channel-network); the SDKs stay behind the channels (Service Bus probes in src/channels/servicebus/diagnostics.ts)',
  },
  {
    name: 'charts',
    files: ['src/charts/**'],
    role: 'chart tooling: model, Mermaid and SCXML renderers, loader, contract check',
    uses: ['core', 'machines', 'user-modules'],
    why: 'reads charts as definitions; runs no link, so it needs no channel, cloud or store',
  },
  {
    name: 'emulator-servicebus',
    files: ['src/emulator/servicebus/**'],
    role: 'the local Azure Service Bus (AMQP 1.0 over rhea)',
    uses: ['core'],
    why: 'a stand-in for Azure stands alone: it shares only SAS code from src/core, never storelink code it is meant to test',
  },
  {
    name: 'emulator-relay',
    files: ['src/emulator/relay/**'],
    role: 'the local Azure Relay Hybrid Connections',
    uses: ['core'],
    why: 'a stand-in for Azure stands alone: it shares only SAS code from src/core, never storelink code it is meant to test',
  },
  {
    name: 'emulator-tls',
    files: ['src/emulator/tls/**'],
    role: "the emulators' development CA and server certificates (node-forge), or given certificate files",
    uses: ['core'],
    packages: ['node-forge'],
    why: 'certificates are files and X.509, nothing more: the emulators and the TLS port use them, they use no emulator',
  },
  {
    name: 'emulator',
    files: ['src/emulator/*'],
    role: 'startEmulators, its one TLS port and the shared Config.json, the storelink/emulator entry point',
    uses: ['core', 'emulator-servicebus', 'emulator-relay', 'emulator-tls'],
    why: 'composes the two emulators, which know nothing of each other, and puts TLS in front of both',
  },
  {
    name: 'demo',
    files: ['src/demo/**'],
    role: '`storelink demo`: emulators, a cloud and store processes, faults, the reconciliation',
    uses: ['core', 'cloud', 'charts', 'store-state', 'channel-servicebus', 'emulator', 'emulator-servicebus', 'emulator-relay', 'package-root'],
    why: "a composition root: it starts everything and reads each side's records (ledgers, dead-letter queues) to reconcile",
  },
  {
    name: 'cli',
    files: ['src/cli/**'],
    role: 'the `storelink` command',
    uses: ['core', 'charts', 'cloud', 'store', 'channel-servicebus', 'emulator', 'demo', 'doctor', 'package-root'],
    why: 'the composition root for the command line: it wires parts together and nothing imports it',
  },
  {
    name: 'library',
    files: ['src/index.ts'],
    role: "storelink's public library surface",
    uses: ['core', 'machines', 'charts', 'channel-servicebus', 'channel-relay', 'cloud', 'store', 'store-state'],
    why: 're-exports the runtime parts; the emulators have their own entry (storelink/emulator), the CLI and demo none',
  },
  {
    name: 'package-root',
    files: ['src/packageRoot.ts'],
    role: "finds storelink's own files (package.json, samples) in any build layout",
    why: 'a leaf: it reads the file system and imports no part',
  },
  {
    name: 'directory-lock',
    files: ['src/directoryLock.ts'],
    role: "one process at a time in a directory: the store agent's data dir and each cloud instance's folder",
    uses: ['core'],
    why: 'a leaf both sides share: the same lock file rules (created whole, stale holders taken over) for the store and the cloud',
  },
  {
    name: 'user-modules',
    files: ['src/userModules.ts'],
    role: 'loads the modules users write (charts, store modules), TypeScript through tsx',
    why: 'a leaf: the one place that loads code by path',
  },
  {
    name: 'samples',
    files: ['samples/**'],
    role: 'runnable examples: click-and-collect, stock query, policies',
    uses: ['core', 'cloud', 'store', 'machines', 'library'],
    why: "written as a user's code: public factories and types only, never a channel or an emulator directly",
  },
  {
    name: 'console',
    files: ['console/src/**'],
    role: 'the operations console: browser code bundled by console/build.ts, served at /console',
    packages: [],
    nodeBuiltins: false,
    why: 'it runs in a browser and talks to the cloud only over its HTTP API, so it imports no part and no package',
  },
  {
    name: 'test',
    files: ['test/**'],
    role: 'unit, machine, integration and scenario tests',
    unrestricted: true,
    why: 'tests exercise every part and the real SDKs directly',
  },
  {
    name: 'bench',
    files: ['bench/**'],
    role: 'benchmarks against hand-written baselines',
    unrestricted: true,
    why: 'baselines use the raw SDKs and lowdb on purpose',
  },
  {
    name: 'tooling',
    files: ['eslint.config.js', 'architecture.config.js', 'vitest.config.ts', 'console/build.ts'],
    role: 'build and lint configuration',
    unrestricted: true,
  },
];

/**
 * Packages that only some parts may import, whatever those parts' other rules say. Parts marked unrestricted (tests,
 * benchmarks) may import them too.
 * @type {{ name: string, owners: string[], files?: string[], why: string }[]}
 */
export const OWNED_PACKAGES = [
  {
    name: '@azure/service-bus',
    owners: ['channel-servicebus'],
    why: 'Azure SDK types never leak out of src/channels; depend on a small interface instead',
  },
  {
    name: 'hyco-https',
    owners: ['channel-relay'],
    why: 'the relay listener is the one user of hyco-https; depend on a small interface instead',
  },
  {
    name: 'lowdb',
    owners: ['store-state'],
    // The sample store keeps its stock in lowdb, as a real store would keep its own database.
    files: ['samples/store-click-and-collect/inventory.ts'],
    why: 'lowdb files are the store-side persistence behind the ledger and outbox',
  },
  {
    name: 'pg',
    owners: ['cloud-database'],
    why: 'the PostgreSQL driver stays behind src/cloud/database',
  },
  {
    name: '@electric-sql/pglite',
    owners: ['cloud-database'],
    why: 'the embedded database stays behind src/cloud/database',
  },
  {
    name: 'kysely',
    owners: ['cloud-database'],
    why: 'SQL is written in src/cloud/database only; the rest of the cloud calls its functions',
  },
  {
    name: 'rhea',
    owners: ['emulator-servicebus'],
    // The SDK's own rhea connections get Nagle turned off there, the one thing core-amqp gives no option for.
    files: ['src/channels/servicebus/amqpSockets.ts'],
    why: 'the Service Bus emulator speaks AMQP through rhea; nothing else speaks raw AMQP',
  },
  {
    name: 'xstate',
    owners: ['machines', 'channel-relay', 'cloud', 'charts'],
    why: 'charts live in machines/; only the parts that run or read charts (relay listener, link registry, chart tooling) touch xstate',
  },
];

/**
 * Arrows today's code takes that the architecture does not want, each with its reason and its way out. Keep this list
 * short and say when an entry can go.
 * @type {{ files: string[], packages: string[], why: string }[]}
 */
export const EXCEPTIONS = [];

/**
 * What a chart may not touch, beyond the imports above: time, randomness, timers and the process. A chart's time is
 * `after` with named delays; jitter, clocks and ids are provided by src/ through `.provide()` or input.
 */
export const MACHINE_PURITY = {
  part: 'machines',
  globals: [
    { name: 'Date', message: 'no clocks in a machine: use `after` with a named delay, deadlines from a provided clock' },
    { name: 'performance', message: 'no clocks in a machine: use `after` with a named delay' },
    { name: 'setTimeout', message: 'no timers in a machine: use `after`' },
    { name: 'setInterval', message: 'no timers in a machine: use `after`' },
    { name: 'setImmediate', message: 'no timers in a machine: use `after` or an invoked actor' },
    { name: 'queueMicrotask', message: 'no scheduling in a machine: raise an event or use an invoked actor' },
    { name: 'clearTimeout', message: 'no timers in a machine: use `after`' },
    { name: 'clearInterval', message: 'no timers in a machine: use `after`' },
    { name: 'crypto', message: 'no randomness in a machine: ids and jitter come from input or a provided actor' },
    { name: 'process', message: 'machines are pure definitions: no process, environment or exit' },
    { name: 'fetch', message: 'machines are pure definitions: no I/O' },
    { name: 'globalThis', message: 'machines are pure definitions: no reaching for globals' },
  ],
  properties: [
    { object: 'Math', property: 'random', message: 'no randomness in a machine: provide a delay for jitter' },
  ],
  syntax: [
    {
      // randomUUID on any object or as a bare function: node:crypto's, Web Crypto's, or one handed in.
      selector: "CallExpression[callee.property.name='randomUUID'], CallExpression[callee.name='randomUUID']",
      message: 'no randomness in a machine: ids come from input or a provided actor',
    },
  ],
};
