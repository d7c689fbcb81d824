// Lint rules, and the dependency arrows of ../shared/HOUSE-STYLE.md as import restrictions.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Packages that only one folder may import, and the folder. */
const OWNED_PACKAGES = [
  { name: '@azure/service-bus', owner: 'src/channels/servicebus' },
  { name: 'hyco-https', owner: 'src/channels/relay' },
  { name: 'lowdb', owner: 'src/store/ledger, src/store/outbox, src/store/segmentedStore' },
  { name: 'rhea', owner: 'src/emulator/servicebus' },
];

const ownedBy = (names) => OWNED_PACKAGES.filter(({ name }) => !names.includes(name));

const packageRules = (allowed = []) =>
  ownedBy(allowed).map(({ name, owner }) => ({
    group: [name, `${name}/*`],
    message: `only ${owner} may import ${name}; depend on a small interface instead`,
  }));

/** Builds the restriction for one area: its forbidden packages plus forbidden project folders. */
const restrict = ({ allowPackages = [], patterns = [], allowTypeImports = false }) => [
  'error',
  {
    patterns: [
      ...packageRules(allowPackages).map((rule) => ({ ...rule, allowTypeImports: false })),
      ...patterns.map((rule) => ({ allowTypeImports, ...rule })),
    ],
  },
];

const NO_IO = ['node:fs', 'node:fs/*', 'fs', 'node:net', 'node:http', 'node:https', 'node:child_process', 'node:dgram', 'node:tls', 'rxjs', 'pino'];

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-restricted-syntax': [
        'error',
        { selector: 'ExportDefaultDeclaration', message: 'use named exports' },
        { selector: 'TSModuleDeclaration[kind="namespace"]', message: 'no TypeScript namespaces' },
        { selector: 'TSEnumDeclaration[const=true]', message: 'no const enums' },
      ],
      '@typescript-eslint/no-restricted-imports': restrict({}),
    },
  },
  {
    files: ['eslint.config.js'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    // Declarations for untyped CommonJS packages need `export =` with a merged namespace.
    files: ['eslint.config.js', 'vitest.config.ts', '**/*.d.ts'],
    rules: { 'no-restricted-syntax': 'off' },
  },
  {
    files: ['machines/**/*.ts', 'samples/**/*.machine.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': restrict({
        patterns: [
          { group: ['node:*', ...NO_IO], message: 'machines are pure definitions: no I/O' },
          {
            group: ['**/src/channels/**', '**/src/cloud/**', '**/src/store/**', '**/src/emulator/**', '**/src/cli/**', '**/src/index*'],
            message: 'machines may import only xstate and types from src/core',
          },
          { group: ['**/src/core/**'], message: 'machines may import only types from src/core', allowTypeImports: true },
        ],
      }),
      'no-restricted-properties': [
        'error',
        { object: 'Date', property: 'now', message: 'no clocks in a machine: use `after` with a named delay' },
        { object: 'Math', property: 'random', message: 'no randomness in a machine: provide a delay for jitter' },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'setTimeout', message: 'no timers in a machine: use `after`' },
        { name: 'setInterval', message: 'no timers in a machine: use `after`' },
        { name: 'fetch', message: 'machines are pure definitions: no I/O' },
      ],
    },
  },
  {
    files: ['src/core/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': restrict({
        patterns: [
          { group: NO_IO, message: 'src/core does no I/O' },
          { group: ['../*', '!../core/*'], message: 'src/core depends on nothing else in the project' },
          { group: ['xstate', 'xstate/*'], message: 'src/core reads charts through TaggedSnapshot, not xstate' },
        ],
      }),
    },
  },
  {
    files: ['src/emulator/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': restrict({
        allowPackages: ['rhea'],
        patterns: [
          {
            group: ['**/channels/**', '**/cloud/**', '**/store/**', '**/cli/**', '**/machines/**'],
            message: 'the emulators stand alone: they share only src/core',
          },
        ],
      }),
    },
  },
  {
    files: ['src/channels/servicebus/**/*.ts'],
    rules: { '@typescript-eslint/no-restricted-imports': restrict({ allowPackages: ['@azure/service-bus'] }) },
  },
  {
    files: ['src/channels/relay/**/*.ts'],
    rules: { '@typescript-eslint/no-restricted-imports': restrict({ allowPackages: ['hyco-https'] }) },
  },
  {
    // The ledger and outbox share segmentedStore; the sample store keeps its own inventory in lowdb, as a real store
    // would; the dispatcher persists its links' snapshots.
    files: [
      'src/store/ledger*.ts',
      'src/store/outbox*.ts',
      'src/store/segmentedStore.ts',
      'samples/store-click-and-collect/inventory.ts',
      'src/cloud/linkStore.ts',
    ],
    rules: { '@typescript-eslint/no-restricted-imports': restrict({ allowPackages: ['lowdb'] }) },
  },
  {
    // Tests and benchmarks exercise the real SDKs and servers directly.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': 'off',
      // vitest's asymmetric matchers (expect.stringContaining, expect.objectContaining) are typed `any`.
      '@typescript-eslint/no-unsafe-assignment': 'off',
    },
  },
);
