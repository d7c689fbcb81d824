// Lint rules. The architecture (parts, arrows, owned packages, pure charts) is declared in architecture.config.js;
// this file only turns that declaration into rules, so each rule lives in one place.
import js from '@eslint/js';
import boundaries from 'eslint-plugin-boundaries';
import tseslint from 'typescript-eslint';
import { EXCEPTIONS, MACHINE_PURITY, OWNED_PACKAGES, PARTS } from './architecture.config.js';

const DECLARATION = 'architecture.config.js';
const partNames = new Set(PARTS.map(({ name }) => name));

const isPart = (name) => ({ file: { categories: name } });
const anyTarget = { module: { origin: ['local', 'external', 'core'] } };

const list = (names) => (names.length === 0 ? 'nothing' : names.join(', '));

/** What a part may import, in words, for the message of any arrow it is not allowed. */
const describeAllowed = (part) => {
  const parts = [part.name, ...(part.uses ?? [])];
  const types = part.usesTypesOf?.length ? `; types only from ${list(part.usesTypesOf)}` : '';
  const packages = part.packages ? `; packages: ${list(part.packages)}` : '';
  const builtins =
    part.nodeBuiltins === false ? '; no node builtins' : Array.isArray(part.nodeBuiltins) ? `; node builtins: ${list(part.nodeBuiltins)}` : '';
  return `${parts.join(', ')}${types}${packages}${builtins}`;
};

/**
 * The declaration as eslint-plugin-boundaries policies. The plugin lets the last matching policy decide, so each part
 * gets, in order: a catch-all refusal carrying the part's message, the arrows it may take, then refusals of packages
 * other parts own. Grants to single files and the declared exceptions come last so they win.
 */
const dependencyPolicies = () => {
  const policies = [];
  for (const part of PARTS) {
    const from = isPart(part.name);
    if (part.unrestricted) {
      policies.push({ from, allow: { to: anyTarget } });
      continue;
    }
    policies.push({
      from,
      disallow: { to: anyTarget },
      message: `${part.name} (${part.role}) may import only ${describeAllowed(part)}: ${part.why} [${DECLARATION}; here: {{dependency.source}}]`,
    });
    policies.push({ from, allow: { to: { file: { categories: [part.name, ...(part.uses ?? [])] } } } });
    if (part.usesTypesOf?.length) {
      policies.push({ from, allow: { to: { file: { categories: part.usesTypesOf } }, dependency: { kind: 'type' } } });
    }
    policies.push({ from, allow: { to: { module: { origin: 'external', ...(part.packages ? { source: part.packages } : {}) } } } });
    if (part.nodeBuiltins !== false) {
      const source = Array.isArray(part.nodeBuiltins) ? { source: part.nodeBuiltins } : {};
      policies.push({ from, allow: { to: { module: { origin: 'core', ...source } } } });
    }
    for (const owned of OWNED_PACKAGES) {
      if (owned.owners.includes(part.name)) continue;
      policies.push({
        from,
        disallow: { to: { module: { origin: 'external', source: owned.name } } },
        message: `only ${list(owned.owners)}${owned.files ? ` and ${list(owned.files)}` : ''} may import ${owned.name}: ${owned.why} [${DECLARATION}]`,
      });
    }
  }
  for (const owned of OWNED_PACKAGES) {
    for (const path of owned.files ?? []) {
      policies.push({ from: { file: { path } }, allow: { to: { module: { origin: 'external', source: owned.name } } } });
    }
  }
  for (const exception of EXCEPTIONS) {
    for (const path of exception.files) {
      policies.push({ from: { file: { path } }, allow: { to: { module: { origin: 'external', source: exception.packages } } } });
    }
  }
  return policies;
};

// A declaration that names a part it does not define would silently allow nothing; say so at load time instead.
for (const part of PARTS) {
  for (const used of [...(part.uses ?? []), ...(part.usesTypesOf ?? [])]) {
    if (!partNames.has(used)) throw new Error(`${DECLARATION}: part ${part.name} uses unknown part ${used}`);
  }
}
for (const owned of OWNED_PACKAGES) {
  for (const owner of owned.owners) {
    if (!partNames.has(owner)) throw new Error(`${DECLARATION}: ${owned.name} is owned by unknown part ${owner}`);
  }
}

const BASE_SYNTAX = [
  { selector: 'ExportDefaultDeclaration', message: 'use named exports' },
  { selector: 'TSModuleDeclaration[kind="namespace"]', message: 'no TypeScript namespaces' },
  { selector: 'TSEnumDeclaration[const=true]', message: 'no const enums' },
];

const machineFiles = PARTS.find(({ name }) => name === MACHINE_PURITY.part).files;

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ['eslint.config.js', DECLARATION] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    plugins: { boundaries },
    settings: {
      // Parts are file categories: a part can be one file (src/index.ts) as well as a folder.
      'boundaries/files': PARTS.map(({ name, files }) => ({ category: name, pattern: files })),
      'boundaries/files-single-match': true,
      // Imports name the emitted `.js` file; the TypeScript resolver maps them to the `.ts` sources, without which
      // every local import would be unresolved and pass unchecked.
      'import/resolver': { typescript: { project: 'tsconfig.json' } },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-restricted-syntax': ['error', ...BASE_SYNTAX],
      'boundaries/no-unknown-files': 'error',
      'boundaries/dependencies': [
        'error',
        { default: 'disallow', checkAllOrigins: true, checkUnknownLocals: true, checkInternals: true, policies: dependencyPolicies() },
      ],
    },
  },
  {
    files: ['eslint.config.js', DECLARATION],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    // Declarations for untyped CommonJS packages need `export =` with a merged namespace.
    files: ['eslint.config.js', 'vitest.config.ts', '**/*.d.ts'],
    rules: { 'no-restricted-syntax': 'off' },
  },
  {
    files: machineFiles,
    rules: {
      'no-restricted-globals': ['error', ...MACHINE_PURITY.globals],
      'no-restricted-properties': ['error', ...MACHINE_PURITY.properties],
      'no-restricted-syntax': ['error', ...BASE_SYNTAX, ...MACHINE_PURITY.syntax],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      // vitest's asymmetric matchers (expect.stringContaining, expect.objectContaining) are typed `any`.
      '@typescript-eslint/no-unsafe-assignment': 'off',
    },
  },
);
