/**
 * `storelink outbox list|show|resubmit|discard --data-dir DIR`: a store's outbox as store IT sees it, pending and
 * parked entries, and what to do with a parked one. It edits the agent's files, so it refuses (DATA_DIR_IN_USE, exit
 * 1) while the store agent runs in that data dir.
 */
import path from 'node:path';
import type { Command } from 'commander';
import { openOutboxMaintenance, type OutboxEntrySummary, type OutboxMaintenance } from '../store/outboxMaintenance.js';
import type { CliIo } from './program.js';

interface CommonOptions {
  dataDir: string;
  json?: boolean;
}

/** A command that ran but did not do what it was asked; runCli prints the message and exits 1. */
class OutboxCommandFailed extends Error {
  override readonly name = 'OutboxCommandFailed';
}

function withCommonOptions(command: Command): Command {
  return command
    .requiredOption('--data-dir <dir>', "the store's data dir (the dataDir of its configuration)")
    .option('--json', 'print JSON instead of text');
}

async function using<T>(io: CliIo, options: CommonOptions, work: (outbox: OutboxMaintenance) => Promise<T> | T): Promise<T> {
  const outbox = await openOutboxMaintenance({ dataDir: path.resolve(io.cwd, options.dataDir) });
  try {
    return await work(outbox);
  } finally {
    await outbox.close();
  }
}

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

function clip(text: string, width: number): string {
  const flat = text.replace(/\s+/g, ' ');
  return flat.length <= width ? flat : `${flat.slice(0, width - 1)}…`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ').trimEnd()).join('\n') + '\n';
}

function entryTable(entries: readonly OutboxEntrySummary[]): string {
  return table([
    ['STATE', 'ID', 'KIND', 'TYPE', 'CREATED', 'BYTES', 'REASON'],
    ...entries.map((entry) => [
      entry.state,
      entry.id,
      entry.kind,
      entry.type,
      entry.createdAt,
      String(entry.size),
      entry.state === 'parked' ? clip(`${entry.code ?? '?'}: ${entry.reason ?? ''}`, 80) : '-',
    ]),
  ]);
}

function notParked(id: string, outbox: OutboxMaintenance): OutboxCommandFailed {
  const pending = outbox.list().some((entry) => entry.id === id && entry.state === 'pending');
  return new OutboxCommandFailed(
    pending ? `entry ${id} is pending, not parked: the store agent sends it` : `no parked entry with id ${id} in the outbox of ${outbox.dataDir}`,
  );
}

export function addOutboxCommand(program: Command, io: CliIo): void {
  const outbox = program.command('outbox').description("read a store's outbox (pending and parked entries) and resubmit or discard parked ones; the store agent must be stopped");

  withCommonOptions(outbox.command('list').description('list pending entries (in the order they will be sent), then parked ones')).action(
    async (options: CommonOptions) => {
      const { dataDir, entries } = await using(io, options, (opened) => ({ dataDir: opened.dataDir, entries: opened.list() }));
      if (options.json === true) io.stdout(json({ dataDir, entries }));
      else if (entries.length === 0) io.stdout(`the outbox of ${dataDir} is empty\n`);
      else io.stdout(entryTable(entries));
    },
  );

  withCommonOptions(outbox.command('show').description('show one entry, body included'))
    .argument('<id>', 'the entry id')
    .action(async (id: string, options: CommonOptions) => {
      const entry = await using(io, options, (opened) => {
        const found = opened.show(id);
        if (found === undefined) throw new OutboxCommandFailed(`no entry with id ${id} in the outbox of ${opened.dataDir}`);
        return found;
      });
      if (options.json === true) {
        io.stdout(json(entry));
        return;
      }
      io.stdout(
        [
          `id          ${entry.id}`,
          `state       ${entry.state}`,
          `kind        ${entry.kind}`,
          `type        ${entry.type}`,
          ...(entry.correlationId === undefined ? [] : [`correlation ${entry.correlationId}`]),
          `created     ${entry.createdAt}`,
          `bytes       ${entry.size}`,
          ...(entry.state === 'parked' ? [`parked      ${entry.parkedAt ?? '?'}`, `reason      ${entry.code ?? '?'}: ${entry.reason ?? ''}`] : []),
          'body',
          JSON.stringify(entry.event.body, null, 2),
          '',
        ].join('\n'),
      );
    });

  withCommonOptions(outbox.command('resubmit').description('move a parked entry back to the end of the pending ones; the store agent sends it when it next runs'))
    .argument('<id>', 'the parked entry id')
    .action(async (id: string, options: CommonOptions) => {
      const result = await using(io, options, async (opened) => {
        const outcome = await opened.resubmit(id);
        if (outcome === undefined) throw notParked(id, opened);
        return outcome;
      });
      if (options.json === true) io.stdout(json({ id, result }));
      else if (result === 'superseded') io.stdout(`${id}: an older announcement than the one pending; discarded instead\n`);
      else io.stdout(`${id}: resubmitted (pending, at the end of the outbox)\n`);
    });

  withCommonOptions(outbox.command('discard').description('delete a parked entry for good'))
    .argument('<id>', 'the parked entry id')
    .action(async (id: string, options: CommonOptions) => {
      await using(io, options, async (opened) => {
        if (!(await opened.discard(id))) throw notParked(id, opened);
      });
      if (options.json === true) io.stdout(json({ id, result: 'discarded' }));
      else io.stdout(`${id}: discarded\n`);
    });
}
