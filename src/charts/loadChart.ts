/**
 * Finds a chart by built-in name or loads it from a module path (`.ts` modules through tsx, so architects need no
 * build step). A module exports its machine as a named export; `path#exportName` picks one when it has several. A
 * module may also export `implementations`: what the pure chart leaves to its host (a wall clock for a maintenance
 * window, say), applied with `machine.provide()`.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { AnyStateMachine } from 'xstate';
import { StorelinkError } from '../core/errors.js';
import { storeLinkMachine } from '../../machines/storeLink.machine.js';
import { importUserModule } from '../userModules.js';

export const BUILT_IN_CHARTS: Readonly<Record<string, AnyStateMachine>> = Object.freeze({
  storeLink: storeLinkMachine,
});

export interface LoadedChart {
  /** The built-in name, or the export name and module path. */
  name: string;
  machine: AnyStateMachine;
}

export function isStateMachine(value: unknown): value is AnyStateMachine {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Partial<AnyStateMachine>;
  return (
    typeof candidate.provide === 'function' &&
    typeof candidate.getInitialSnapshot === 'function' &&
    typeof candidate.root === 'object' &&
    candidate.root !== null
  );
}

function pickMachine(exports: Record<string, unknown>, exportName: string | undefined, file: string): [string, AnyStateMachine] {
  if (exportName !== undefined) {
    const value = exports[exportName];
    if (!isStateMachine(value)) {
      throw new StorelinkError('CHART_UNLOADABLE', `${file}: export "${exportName}" is not an xstate machine`);
    }
    return [exportName, value];
  }
  const machines = Object.entries(exports).filter((entry): entry is [string, AnyStateMachine] => isStateMachine(entry[1]));
  const named = machines.filter(([name]) => name !== 'default');
  const candidates = named.length > 0 ? named : machines;
  if (candidates.length === 0) {
    throw new StorelinkError('CHART_UNLOADABLE', `${file}: the module exports no xstate machine (export one, e.g. "export const myMachine = setup(...).createMachine(...)")`);
  }
  if (candidates.length > 1) {
    const names = candidates.map(([name]) => name).join(', ');
    throw new StorelinkError('CHART_UNLOADABLE', `${file}: the module exports several machines (${names}); choose one with "${file}#<exportName>"`);
  }
  return candidates[0]!;
}

/**
 * Resolves `spec`: a built-in chart name (`storeLink`), or a module path relative to `cwd`, optionally followed by
 * `#exportName`.
 */
export async function loadChart(spec: string, cwd: string = process.cwd()): Promise<LoadedChart> {
  const builtIn = BUILT_IN_CHARTS[spec];
  if (builtIn !== undefined && Object.hasOwn(BUILT_IN_CHARTS, spec)) return { name: spec, machine: builtIn };

  const hash = spec.lastIndexOf('#');
  const modulePath = hash > 0 ? spec.slice(0, hash) : spec;
  const exportName = hash > 0 ? spec.slice(hash + 1) : undefined;
  const file = path.resolve(cwd, modulePath);
  if (!existsSync(file)) {
    const known = Object.keys(BUILT_IN_CHARTS).join(', ');
    throw new StorelinkError('CHART_NOT_FOUND', `"${spec}" is neither a built-in chart (${known}) nor an existing module file`);
  }
  let exports: Record<string, unknown>;
  try {
    exports = await importUserModule(file);
  } catch (cause) {
    throw new StorelinkError('CHART_UNLOADABLE', `${modulePath}: the module failed to load: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
  const [name, machine] = pickMachine(exports, exportName, modulePath);
  const implementations = exports['implementations'];
  if (implementations === undefined) return { name: `${name} (${modulePath})`, machine };
  if (typeof implementations !== 'object' || implementations === null) {
    throw new StorelinkError('CHART_UNLOADABLE', `${modulePath}: "implementations" must be an object for machine.provide()`);
  }
  return { name: `${name} (${modulePath})`, machine: machine.provide(implementations) };
}
