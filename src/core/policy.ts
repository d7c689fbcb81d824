/**
 * Routing policy, as data. Per operation type: its default latency, what to do when the relay cannot be used
 * (`fallback`), how long a relay call may take and how long the operation lives. Per link (one store's channels): the
 * breaker settings the state chart reads from its input.
 */
import { z } from 'zod';
import { StorelinkError } from './errors.js';
import { operationTypeSchema } from './names.js';
import { latencySchema, type Latency } from './operation.js';
import { describeIssue } from './validation.js';

export const FALLBACKS = ['queue', 'reject', 'cached'] as const;
export type Fallback = (typeof FALLBACKS)[number];

/**
 * What a real-time operation does when the relay carried it but the store failed to run it (HANDLER_FAILED: its
 * database down, say): take the type's `fallback` (`queue` is safe under the same id, as the store's ledger has no
 * record of a failed run), or answer the failure as it is.
 */
export const STORE_FAILURE_ACTIONS = ['fallback', 'fail'] as const;
export type StoreFailureAction = (typeof STORE_FAILURE_ACTIONS)[number];

const DAY_IN_MS = 24 * 60 * 60 * 1000;
/** A relay call cannot outlive the relay's own wait for a listener's response (60 s on Azure). */
export const MAX_RELAY_TIMEOUT_IN_MS = 60_000;

export interface OperationPolicy {
  /** The latency an operation of this type gets when the publisher does not choose one. */
  latency: Latency;
  /** What a real-time operation does when the relay cannot be used. */
  fallback: Fallback;
  /** What a real-time operation does when the store answers on the relay with a failure that is not a refusal. */
  onStoreFailure: StoreFailureAction;
  relayTimeoutInMs: number;
  timeToLiveInMs: number;
  /** For the `cached` fallback: a reply older than this is not served. */
  cachedReplyMaxAgeInMs: number;
  /** For the `cached` fallback: the most replies of this type kept (the least recently used go first). */
  maxCachedReplies: number;
}

export interface LinkPolicy {
  /** Consecutive relay channel failures that trip the link. */
  failureThreshold: number;
  /** The first cool-down after tripping; each further trip doubles it, up to `maxCooldownInMs`. */
  openCooldownInMs: number;
  maxCooldownInMs: number;
  /** How often a tripped link's relay is health-checked, independently of traffic. */
  probeIntervalInMs: number;
  /** How often a healthy link's relay is health-checked, so a relay that dies while no traffic flows is noticed. */
  healthyProbeIntervalInMs: number;
}

export interface Policy {
  link: LinkPolicy;
  /** Applies to every operation type not listed in `operations`, and fills what a listed type leaves out. */
  operationDefaults: OperationPolicy;
  operations: Record<string, OperationPolicy>;
}

export const DEFAULT_LINK_POLICY: LinkPolicy = Object.freeze({
  failureThreshold: 3,
  openCooldownInMs: 5_000,
  maxCooldownInMs: 5 * 60_000,
  probeIntervalInMs: 15_000,
  healthyProbeIntervalInMs: 60_000,
});

export const DEFAULT_OPERATION_POLICY: OperationPolicy = Object.freeze({
  latency: 'async',
  fallback: 'queue',
  onStoreFailure: 'fallback',
  relayTimeoutInMs: 5_000,
  timeToLiveInMs: DAY_IN_MS,
  cachedReplyMaxAgeInMs: 10 * 60_000,
  maxCachedReplies: 10_000,
});

const milliseconds = (minimum: number, maximum: number) =>
  z
    .number({ message: 'expected a whole number of milliseconds' })
    .int('expected a whole number of milliseconds')
    .min(minimum, `expected at least ${minimum} ms`)
    .max(maximum, `expected at most ${maximum} ms`);

const operationPolicyInputSchema = z.strictObject({
  latency: latencySchema.optional(),
  fallback: z.enum(FALLBACKS).optional(),
  onStoreFailure: z.enum(STORE_FAILURE_ACTIONS).optional(),
  relayTimeoutInMs: milliseconds(1, MAX_RELAY_TIMEOUT_IN_MS).optional(),
  timeToLiveInMs: milliseconds(1_000, 366 * DAY_IN_MS).optional(),
  cachedReplyMaxAgeInMs: milliseconds(1_000, 366 * DAY_IN_MS).optional(),
  maxCachedReplies: z
    .number({ message: 'expected a whole number' })
    .int('expected a whole number')
    .min(1, 'expected at least 1')
    .max(1_000_000, 'expected at most 1000000')
    .optional(),
});

const linkPolicyInputSchema = z
  .strictObject({
    failureThreshold: z
      .number({ message: 'expected a whole number' })
      .int('expected a whole number')
      .min(1, 'expected at least 1')
      .max(1_000, 'expected at most 1000')
      .optional(),
    openCooldownInMs: milliseconds(10, DAY_IN_MS).optional(),
    maxCooldownInMs: milliseconds(10, DAY_IN_MS).optional(),
    probeIntervalInMs: milliseconds(100, DAY_IN_MS).optional(),
    healthyProbeIntervalInMs: milliseconds(100, DAY_IN_MS).optional(),
  })
  .transform((link) => ({ ...DEFAULT_LINK_POLICY, ...link }))
  .superRefine((link, context) => {
    if (link.maxCooldownInMs < link.openCooldownInMs) {
      context.addIssue({
        code: 'custom',
        path: ['maxCooldownInMs'],
        message: `expected at least openCooldownInMs (${link.openCooldownInMs} ms), got ${link.maxCooldownInMs}`,
      });
    }
  });

export const policyInputSchema = z
  .strictObject({
    $schema: z.string().optional(),
    link: linkPolicyInputSchema.optional(),
    operationDefaults: operationPolicyInputSchema.optional(),
    operations: z.record(operationTypeSchema, operationPolicyInputSchema).optional(),
  })
  .transform((input): Policy => {
    const operationDefaults = { ...DEFAULT_OPERATION_POLICY, ...input.operationDefaults };
    const operations: Record<string, OperationPolicy> = {};
    for (const [type, overrides] of Object.entries(input.operations ?? {})) {
      operations[type] = { ...operationDefaults, ...overrides };
    }
    return { link: input.link ?? { ...DEFAULT_LINK_POLICY }, operationDefaults, operations };
  });

/** The policy of a JSON document: `{}` is the default policy. */
export type PolicyInput = z.input<typeof policyInputSchema>;

export interface ParsePolicyOptions {
  /** Where the document came from, for error messages (a file path). */
  source?: string;
}

/** Validates a policy document and fills in defaults. Throws `POLICY_INVALID` naming the source, field and expectation. */
export function parsePolicy(value: unknown, options: ParsePolicyOptions = {}): Policy {
  const result = policyInputSchema.safeParse(value, { reportInput: true });
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => describeIssue(issue));
  const where = options.source === undefined ? '' : `${options.source}: `;
  const message = [`${where}invalid policy: ${lines[0]!.text}`, ...lines.slice(1).map((line) => `  also ${line.text}`)].join('\n');
  return fail(message, lines[0]!.field, result.error);
}

function fail(message: string, field: string | undefined, cause: unknown): never {
  throw new StorelinkError('POLICY_INVALID', message, { field, cause });
}

export function defaultPolicy(): Policy {
  return parsePolicy({});
}

/** The effective policy of one operation type. */
export function operationPolicyFor(policy: Policy, type: string): OperationPolicy {
  return policy.operations[type] ?? policy.operationDefaults;
}
