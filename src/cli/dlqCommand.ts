/** `storelink dlq list|show|resubmit --store ID`: a store queue's dead-letter queue, read and replayed. */
import { InvalidArgumentError, Option, type Command } from 'commander';
import {
  createDeadLetterQueue,
  type DeadLetteredMessage,
  type DeadLetterQueue,
  type DeadLetterSelector,
  type ResubmitResult,
} from '../channels/servicebus/deadLetterQueue.js';
import { isStorelinkError } from '../core/errors.js';
import { defaultStoreEntityName, storeIdSchema } from '../core/names.js';
import { wholeNumber } from './optionParsers.js';
import type { CliIo } from './program.js';

/** The environment variable read when `--connection-string` is not given. */
export const CONNECTION_STRING_ENV = 'STORELINK_SERVICEBUS';

interface CommonOptions {
  store: string;
  connectionString?: string;
  transport?: 'websockets' | 'amqp';
  caFile?: string;
  json?: boolean;
}

function storeId(value: string): string {
  const parsed = storeIdSchema.safeParse(value);
  if (!parsed.success) throw new InvalidArgumentError(`store id ${parsed.error.issues[0]!.message}`);
  return parsed.data;
}

function withCommonOptions(command: Command): Command {
  return command
    .requiredOption('--store <id>', 'the store whose queue (store-<id>) to use', storeId)
    .option('--connection-string <cs>', `Service Bus connection string (default: $${CONNECTION_STRING_ENV})`)
    .addOption(new Option('--transport <transport>', 'AMQP over TCP 5671, or over WebSockets on 443 (needed behind an HTTPS_PROXY)').choices(['amqp', 'websockets']).default('amqp'))
    .option('--ca-file <file>', 'an extra CA to trust (PEM; with --transport websockets)')
    .option('--json', 'print JSON instead of a table');
}

/** Opens the store queue's dead-letter queue, or reports a usage error naming what to set. */
function open(command: Command, options: CommonOptions): DeadLetterQueue {
  const connectionString = options.connectionString ?? process.env[CONNECTION_STRING_ENV];
  if (connectionString === undefined || connectionString.length === 0) {
    command.error(`storelink: no Service Bus connection string: pass --connection-string or set ${CONNECTION_STRING_ENV}`, {
      exitCode: 2,
      code: 'storelink.missingConnectionString',
    });
  }
  try {
    return createDeadLetterQueue({
      connectionString,
      queue: defaultStoreEntityName(options.store),
      ...(options.transport === undefined ? {} : { transport: options.transport }),
      ...(options.caFile === undefined ? {} : { tls: { caFile: options.caFile } }),
    });
  } catch (error) {
    if (isStorelinkError(error, 'CONNECTION_STRING_INVALID')) command.error(`storelink: ${error.message}`, { exitCode: 2, code: 'storelink.invalidConnectionString' });
    // A proxy or CA the chosen transport cannot use: say which and what to change.
    if (error instanceof TypeError) command.error(`storelink: ${error.message}`, { exitCode: 2, code: 'storelink.invalidNetworkOptions' });
    throw error;
  }
}

/** Lets an embedding (or a test) stop a long scan the way it stops `emulator`. */
function signal(io: CliIo): { abortSignal?: AbortSignal } {
  return io.stopSignal === undefined ? {} : { abortSignal: io.stopSignal };
}

async function using<T>(dlq: DeadLetterQueue, work: (dlq: DeadLetterQueue) => Promise<T>): Promise<T> {
  try {
    return await work(dlq);
  } finally {
    await dlq.close();
  }
}

function ageOf(date: Date | undefined, nowInMs: number): string {
  if (date === undefined) return '?';
  const seconds = Math.max(0, Math.round((nowInMs - date.getTime()) / 1000));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86_400)}d`;
}

function clip(text: string, width: number): string {
  const flat = text.replace(/\s+/g, ' ');
  return flat.length <= width ? flat : `${flat.slice(0, width - 1)}…`;
}

function operationOf(message: DeadLetteredMessage): string {
  return message.operation === undefined ? `(not an operation) ${message.messageId ?? ''}`.trimEnd() : `${message.operation.type} ${message.operation.id}`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ').trimEnd()).join('\n') + '\n';
}

function messageTable(messages: readonly DeadLetteredMessage[], nowInMs: number): string {
  return table([
    ['SEQ', 'AGE', 'REASON', 'DESCRIPTION', 'OPERATION'],
    ...messages.map((message) => [
      message.sequenceNumber,
      ageOf(message.enqueuedAt, nowInMs),
      message.reason ?? '-',
      clip(message.description ?? '-', 60),
      operationOf(message),
    ]),
  ]);
}

function isExpired(message: DeadLetteredMessage, nowInMs: number): boolean {
  return message.operation !== undefined && Date.parse(message.operation.expiresAt) <= nowInMs;
}

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

function resubmitJson(queue: string, result: ResubmitResult): unknown {
  return {
    queue,
    resubmitted: result.resubmitted.map(({ message, mayBeDroppedAsDuplicate }) => ({ ...message, mayBeDroppedAsDuplicate })),
    failed: result.failed.map(({ message, sent, error }) => ({ ...message, sent, error: { code: error.code, message: error.message } })),
    notFound: result.notFound,
  };
}

/** A command that ran but did not do all it was asked; runCli prints the message and exits 1. */
class DlqFailed extends Error {
  override readonly name = 'DlqFailed';
}

export function addDlqCommand(program: Command, io: CliIo): void {
  const dlq = program.command('dlq').description("read a store queue's dead-letter queue, and send messages back to the queue");

  withCommonOptions(dlq.command('list').description('list dead-lettered messages, oldest first (peeks: takes no locks)'))
    .option('--limit <n>', 'most messages to list', wholeNumber(1, Number.MAX_SAFE_INTEGER, 'expected a positive integer'), 100)
    .action(async (options: CommonOptions & { limit: number }, command: Command) => {
      const queue = open(command, options);
      const messages = await using(queue, (opened) => opened.list({ limit: options.limit, ...signal(io) }));
      if (options.json === true) {
        io.stdout(json({ queue: queue.queue, messages }));
      } else if (messages.length === 0) {
        io.stdout(`the dead-letter queue of ${queue.queue} is empty\n`);
      } else {
        io.stdout(messageTable(messages, Date.now()));
      }
    });

  withCommonOptions(dlq.command('show').description('show one dead-lettered message, body included'))
    .argument('<id>', 'its sequence number or messageId')
    .action(async (id: string, options: CommonOptions, command: Command) => {
      const queue = open(command, options);
      const message = await using(queue, (opened) => opened.show(id, signal(io)));
      if (message === undefined) {
        throw new DlqFailed(`no message with sequence number or messageId "${id}" in the dead-letter queue of ${queue.queue}`);
      }
      if (options.json === true) {
        io.stdout(json(message));
        return;
      }
      const nowInMs = Date.now();
      io.stdout(
        [
          `sequence number  ${message.sequenceNumber}`,
          `message id       ${message.messageId ?? '-'}`,
          `enqueued         ${message.enqueuedAt?.toISOString() ?? '?'} (${ageOf(message.enqueuedAt, nowInMs)} ago)`,
          `delivery count   ${message.deliveryCount}`,
          `reason           ${message.reason ?? '-'}`,
          `description      ${message.description ?? '-'}`,
          message.operation === undefined
            ? 'operation        (the body is not a valid operation envelope)'
            : `operation        ${message.operation.type} ${message.operation.id} for store ${message.operation.storeId}, expires ${message.operation.expiresAt}${isExpired(message, nowInMs) ? ' (expired)' : ''}`,
          'body',
          JSON.stringify(message.body, null, 2),
          '',
        ].join('\n'),
      );
    });

  withCommonOptions(dlq.command('resubmit').description('send dead-lettered messages back to the queue with their original messageId, then remove them'))
    .argument('[ids...]', 'sequence numbers or messageIds')
    .option('--all', 'every dead-lettered message')
    .option('--reason <code>', 'every dead-lettered message with this reason (e.g. OPERATION_EXPIRED)')
    .action(async (ids: string[], options: CommonOptions & { all?: boolean; reason?: string }, command: Command) => {
      const chosen = [ids.length > 0, options.all === true, options.reason !== undefined].filter(Boolean).length;
      if (chosen !== 1) {
        command.error('storelink: choose the messages with sequence numbers or messageIds, or --all, or --reason CODE (exactly one of them)', {
          exitCode: 2,
          code: 'storelink.noSelection',
        });
      }
      const selector: DeadLetterSelector = options.all === true ? { all: true } : options.reason !== undefined ? { reason: options.reason } : { ids };
      const queue = open(command, options);
      const result = await using(queue, (opened) => opened.resubmit(selector, signal(io)));
      if (options.json === true) {
        io.stdout(json(resubmitJson(queue.queue, result)));
      } else {
        reportResubmit(io, queue.queue, result);
      }
      const missed = result.failed.length + result.notFound.length;
      if (missed > 0) throw new DlqFailed(`${missed} of the selected messages ${missed === 1 ? 'was' : 'were'} not resubmitted`);
    });
}

function reportResubmit(io: CliIo, queue: string, result: ResubmitResult): void {
  const nowInMs = Date.now();
  if (result.resubmitted.length === 0 && result.failed.length === 0 && result.notFound.length === 0) {
    io.stdout(`nothing to resubmit: no dead-lettered message of ${queue} matched\n`);
    return;
  }
  if (result.resubmitted.length > 0) {
    io.stdout(`resubmitted ${result.resubmitted.length} message${result.resubmitted.length === 1 ? '' : 's'} to ${queue}:\n`);
    io.stdout(messageTable(result.resubmitted.map(({ message }) => message), nowInMs));
  }
  for (const { message } of result.resubmitted) {
    if (isExpired(message, nowInMs)) {
      io.stderr(
        `storelink: warning: operation ${message.operation!.id} expired at ${message.operation!.expiresAt}; the store will dead-letter it again as OPERATION_EXPIRED\n`,
      );
    }
  }
  const risky = result.resubmitted.filter(({ mayBeDroppedAsDuplicate }) => mayBeDroppedAsDuplicate);
  if (risky.length > 0) {
    io.stderr(
      `storelink: warning: ${risky.length} message${risky.length === 1 ? ' was' : 's were'} first enqueued less than the duplicate detection window ago; ` +
        `if ${queue} has duplicate detection on, Service Bus drops ${risky.length === 1 ? 'it' : 'them'} silently (same messageId): ` +
        `${risky.map(({ message }) => message.messageId ?? message.sequenceNumber).join(', ')}\n`,
    );
  }
  for (const { message, sent, error } of result.failed) {
    io.stderr(
      `storelink: ${message.sequenceNumber} (${message.messageId ?? '-'}): ${sent ? 'sent, but still in the dead-letter queue' : 'not sent, still in the dead-letter queue'}: ${error.code}: ${error.message}\n`,
    );
  }
  for (const id of result.notFound) io.stderr(`storelink: ${id}: not in the dead-letter queue of ${queue} (or locked by another receiver)\n`);
}
