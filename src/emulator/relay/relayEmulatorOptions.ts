/**
 * Options of the relay emulator, validated once at start so the rest of the emulator works with complete, trusted
 * values.
 */
import { z } from 'zod';

export type RelayRight = 'Listen' | 'Send' | 'Manage';

export interface SharedAccessPolicy {
  keyName: string;
  primaryKey: string;
  secondaryKey?: string;
  /** `Manage` implies `Listen` and `Send`. */
  rights: readonly RelayRight[];
}

export interface HybridConnectionDefinition {
  /** The entity name; may contain `/`. Matched case-insensitively. */
  name: string;
  /** When false, senders need no token (listeners always need a Listen token). Default true, as in Azure. */
  requiresClientAuthorization?: boolean;
  /**
   * The hybrid connection's own authorization rules (Azure's entity-level rules), consulted before the namespace's
   * policies: their keys are valid for this hybrid connection only.
   */
  authorizationRules?: readonly SharedAccessPolicy[];
  /** The older name of `authorizationRules`; both may be given, a key name only once across them. */
  policies?: readonly SharedAccessPolicy[];
}

export type RelayLogLevel = 'debug' | 'info' | 'warn' | 'error';

/** One structured log record. Tokens and keys never appear in it. */
export interface RelayLogEntry {
  level: RelayLogLevel;
  /** Stable, dot-namespaced event name, e.g. `listener.connected`, `request.completed`. */
  event: string;
  message: string;
  timeInMs: number;
  hybridConnection?: string;
  listenerId?: string;
  requestId?: string;
  statusCode?: number;
  closeCode?: number;
}

export interface RelayEmulatorOptions {
  /** Interface to bind; default `127.0.0.1`. */
  host?: string;
  /**
   * TCP port of the plaintext (HTTP and ws) listener; default 0 (ephemeral). `null`: no plaintext port at all, the
   * emulator then serves only the connections handed to `acceptConnection` (the TLS port of `startEmulators`).
   */
  port?: number | null;
  /** Namespace-level policies; default one development `RootManageSharedAccessKey` with Manage. */
  sharedAccessPolicies?: readonly SharedAccessPolicy[];
  hybridConnections?: readonly HybridConnectionDefinition[];
  /** Create an unknown hybrid connection on first use instead of answering 404. Default false. */
  autoCreate?: boolean;
  /** Status for "no listener connected": 404 as Azure answers in the field, 502/503 as its documentation says. */
  noListenerStatus?: 404 | 502 | 503;
  /** Time a listener has to send the response header; default 60 000 (Azure's fixed value). */
  responseTimeoutInMs?: number;
  /** Time a listener has to open a requested rendezvous socket; default 30 000. */
  rendezvousTimeoutInMs?: number;
  /** Default 25, as Azure. */
  maxListenersPerConnection?: number;
  /** How long a control channel survives past its token's expiry; default 300 000 (Azure's observed ~5 min). */
  tokenExpiryGraceInMs?: number;
  /** Clock skew tolerated when a token is presented; default 0. */
  clockSkewInMs?: number;
  /** WebSocket ping period on control channels; a channel missing two pongs is terminated. 0 disables. Default 30 000. */
  pingIntervalInMs?: number;
  /** Largest request or response body relayed; default 16 MiB, at most 100 MiB (hyco-https' message cap). */
  maxBodySizeInBytes?: number;
  /**
   * Time a client (sender, or listener opening a WebSocket) has to send its request headers before it is answered 408
   * and cut; default 30 000. Cuts slow clients (slowloris) on both the HTTP and the WebSocket upgrade paths.
   */
  headersTimeoutInMs?: number;
  /** Time a sender has to send its whole request, body included; default 60 000, as long as a listener has to answer. */
  requestTimeoutInMs?: number;
  /**
   * Time an HTTP connection may stay silent before it is closed; default 120 000. A sender waits silently for its
   * answer, so this must be longer than responseTimeoutInMs. WebSocket channels are not subject to it (pings keep
   * them alive).
   */
  idleTimeoutInMs?: number;
  /**
   * Where listeners reach the relay from outside, when that differs from what they connect to (a TLS terminator, a
   * port mapping): `wss://relay.example.com` or `https://relay.example.com:8443`. Rendezvous addresses then start with
   * it. Default: the scheme (wss when the listener's socket is TLS, ws otherwise), host and port of the listener's
   * own connection, from its Host header.
   */
  publicUrl?: string;
  /**
   * Most fragments one WebSocket message from a listener may arrive in; default 1 048 576. hyco-https sends each
   * `res.write` of a response as one fragment, so a response written a byte at a time needs one per byte; ws alone
   * would stop at 16 384 ("Too many message fragments"). 0 lifts the limit.
   */
  maxFragmentsPerMessage?: number;
  /** Also accept tokens whose audience lies below the hybrid connection (minted for a full request URL). Default true. */
  lenientAudience?: boolean;
  /** Aborting before the server listens rejects the start; aborting later closes the emulator. */
  abortSignal?: AbortSignal;
  logger?: (entry: RelayLogEntry) => void;
  /** The clock, in ms since the epoch (tests inject one). Default `Date.now`. */
  now?: () => number;
}

/** A development key, published on purpose: the emulator is never reachable from outside the machine by default. */
export const DEVELOPMENT_KEY_NAME = 'RootManageSharedAccessKey';
export const DEVELOPMENT_KEY = 'SAS_KEY_VALUE';

const HARD_MAX_BODY = 100 * 1024 * 1024 - 64 * 1024;
const MAX_TIMER_MS = 2_147_483_647;

const rightSchema = z.enum(['Listen', 'Send', 'Manage']);
const policySchema = z
  .object({
    keyName: z.string().min(1).max(256),
    primaryKey: z.string().min(1),
    secondaryKey: z.string().min(1).optional(),
    rights: z.array(rightSchema).min(1),
  })
  .strict();
const hybridConnectionSchema = z
  .object({
    name: z
      .string()
      .min(1)
      .max(260)
      .refine((name) => !name.startsWith('/') && !name.endsWith('/') && !name.includes('//'), {
        message: 'must not start or end with "/" nor contain "//"',
      })
      .refine((name) => !/[?#\\\s]/.test(name) && name.toLowerCase() !== '$hc' && !name.toLowerCase().startsWith('$hc/'), {
        message: 'must not contain "?", "#", "\\" or whitespace, nor start with "$hc"',
      }),
    requiresClientAuthorization: z.boolean().optional(),
    authorizationRules: z.array(policySchema).optional(),
    policies: z.array(policySchema).optional(),
  })
  .strict();
const durationSchema = (min: number) => z.number().int().min(min).max(MAX_TIMER_MS);

const optionsSchema = z
  .object({
    host: z.string().min(1).optional(),
    port: z.number().int().min(0).max(65535).nullable().optional(),
    sharedAccessPolicies: z.array(policySchema).optional(),
    hybridConnections: z.array(hybridConnectionSchema).optional(),
    autoCreate: z.boolean().optional(),
    noListenerStatus: z.union([z.literal(404), z.literal(502), z.literal(503)]).optional(),
    responseTimeoutInMs: durationSchema(1).optional(),
    rendezvousTimeoutInMs: durationSchema(1).optional(),
    maxListenersPerConnection: z.number().int().min(1).max(10_000).optional(),
    tokenExpiryGraceInMs: durationSchema(0).optional(),
    clockSkewInMs: durationSchema(0).optional(),
    pingIntervalInMs: durationSchema(0).optional(),
    maxBodySizeInBytes: z.number().int().min(1).max(HARD_MAX_BODY).optional(),
    headersTimeoutInMs: durationSchema(1).optional(),
    requestTimeoutInMs: durationSchema(1).optional(),
    idleTimeoutInMs: durationSchema(1).optional(),
    lenientAudience: z.boolean().optional(),
    publicUrl: z.string().max(2048).optional(),
    maxFragmentsPerMessage: z.number().int().min(0).max(2 ** 30).optional(),
    abortSignal: z.instanceof(AbortSignal).optional(),
    logger: z.custom<(entry: RelayLogEntry) => void>((value) => typeof value === 'function', 'must be a function').optional(),
    now: z.custom<() => number>((value) => typeof value === 'function', 'must be a function returning ms since the epoch, like Date.now').optional(),
  })
  .strict();

export interface ResolvedPolicy {
  keyName: string;
  keys: readonly string[];
  canListen: boolean;
  canSend: boolean;
}

export interface ResolvedHybridConnection {
  name: string;
  requiresClientAuthorization: boolean;
  policies: ReadonlyMap<string, ResolvedPolicy>;
}

export interface ResolvedRelayEmulatorOptions {
  host: string;
  /** null: no plaintext listener. */
  port: number | null;
  policies: ReadonlyMap<string, ResolvedPolicy>;
  hybridConnections: readonly ResolvedHybridConnection[];
  autoCreate: boolean;
  noListenerStatus: 404 | 502 | 503;
  responseTimeoutInMs: number;
  rendezvousTimeoutInMs: number;
  maxListenersPerConnection: number;
  tokenExpiryGraceInMs: number;
  clockSkewInMs: number;
  pingIntervalInMs: number;
  maxBodySizeInBytes: number;
  headersTimeoutInMs: number;
  requestTimeoutInMs: number;
  idleTimeoutInMs: number;
  lenientAudience: boolean;
  /** `ws://` or `wss://` plus host[:port], without a path; undefined: from each listener's connection. */
  publicOrigin: string | undefined;
  maxFragmentsPerMessage: number;
  abortSignal: AbortSignal | undefined;
  logger: ((entry: RelayLogEntry) => void) | undefined;
  /**
   * Every reading of the time (token expiry, fault windows, log and error timestamps) goes through it, so a moved
   * clock moves them all together; timers still measure real durations.
   */
  now: () => number;
}

function resolvePolicies(policies: readonly z.infer<typeof policySchema>[], where: string): Map<string, ResolvedPolicy> {
  const resolved = new Map<string, ResolvedPolicy>();
  for (const policy of policies) {
    if (resolved.has(policy.keyName)) {
      throw new TypeError(`startRelayEmulator: ${where} declares the key name "${policy.keyName}" twice`);
    }
    const manage = policy.rights.includes('Manage');
    resolved.set(policy.keyName, {
      keyName: policy.keyName,
      keys: policy.secondaryKey === undefined ? [policy.primaryKey] : [policy.primaryKey, policy.secondaryKey],
      canListen: manage || policy.rights.includes('Listen'),
      canSend: manage || policy.rights.includes('Send'),
    });
  }
  return resolved;
}

export function resolveHybridConnection(definition: z.infer<typeof hybridConnectionSchema>): ResolvedHybridConnection {
  return {
    name: definition.name,
    requiresClientAuthorization: definition.requiresClientAuthorization ?? true,
    policies: resolvePolicies([...(definition.authorizationRules ?? []), ...(definition.policies ?? [])], `hybrid connection "${definition.name}"`),
  };
}

/** Validates and completes the options; throws `TypeError`/`RangeError` naming the field to fix. */
export function resolveRelayEmulatorOptions(options: RelayEmulatorOptions): ResolvedRelayEmulatorOptions {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('startRelayEmulator: options must be an object');
  }
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.join('.') || '(options)';
    const ErrorType = issue.code === 'too_small' || issue.code === 'too_big' ? RangeError : TypeError;
    throw new ErrorType(`startRelayEmulator: option ${field}: ${issue.message}`);
  }
  const value = parsed.data;
  const seen = new Set<string>();
  const hybridConnections = (value.hybridConnections ?? []).map((definition) => {
    const key = definition.name.toLowerCase();
    if (seen.has(key)) {
      throw new TypeError(`startRelayEmulator: hybrid connection "${definition.name}" is declared twice`);
    }
    seen.add(key);
    return resolveHybridConnection(definition);
  });
  const policies = resolvePolicies(
    value.sharedAccessPolicies ?? [{ keyName: DEVELOPMENT_KEY_NAME, primaryKey: DEVELOPMENT_KEY, rights: ['Manage'] }],
    'sharedAccessPolicies',
  );
  const responseTimeoutInMs = value.responseTimeoutInMs ?? 60_000;
  const requestTimeoutInMs = value.requestTimeoutInMs ?? Math.max(60_000, value.headersTimeoutInMs ?? 0);
  const headersTimeoutInMs = value.headersTimeoutInMs ?? Math.min(30_000, requestTimeoutInMs);
  if (headersTimeoutInMs > requestTimeoutInMs) {
    throw new RangeError(`startRelayEmulator: option headersTimeoutInMs (${headersTimeoutInMs}) must be at most requestTimeoutInMs (${requestTimeoutInMs}): the headers are part of the request`);
  }
  const idleTimeoutInMs = value.idleTimeoutInMs ?? Math.max(120_000, responseTimeoutInMs + 60_000);
  if (idleTimeoutInMs <= responseTimeoutInMs) {
    throw new RangeError(`startRelayEmulator: option idleTimeoutInMs (${idleTimeoutInMs}) must be longer than responseTimeoutInMs (${responseTimeoutInMs}): a sender waits silently for its answer`);
  }
  return {
    host: value.host ?? '127.0.0.1',
    port: value.port === null ? null : (value.port ?? 0),
    policies,
    hybridConnections,
    autoCreate: value.autoCreate ?? false,
    noListenerStatus: value.noListenerStatus ?? 404,
    responseTimeoutInMs,
    rendezvousTimeoutInMs: value.rendezvousTimeoutInMs ?? 30_000,
    maxListenersPerConnection: value.maxListenersPerConnection ?? 25,
    tokenExpiryGraceInMs: value.tokenExpiryGraceInMs ?? 300_000,
    clockSkewInMs: value.clockSkewInMs ?? 0,
    pingIntervalInMs: value.pingIntervalInMs ?? 30_000,
    maxBodySizeInBytes: value.maxBodySizeInBytes ?? 16 * 1024 * 1024,
    headersTimeoutInMs,
    requestTimeoutInMs,
    idleTimeoutInMs,
    lenientAudience: value.lenientAudience ?? true,
    publicOrigin: value.publicUrl === undefined ? undefined : publicOriginOf(value.publicUrl),
    maxFragmentsPerMessage: value.maxFragmentsPerMessage ?? 1_048_576,
    abortSignal: value.abortSignal,
    logger: value.logger,
    now: value.now ?? Date.now,
  };
}

const WEBSOCKET_SCHEMES: Readonly<Record<string, string>> = { 'http:': 'ws', 'ws:': 'ws', 'https:': 'wss', 'wss:': 'wss' };

/** `https://relay.example.com:8443/` → `wss://relay.example.com:8443`; throws a TypeError saying what is wrong. */
export function publicOriginOf(publicUrl: string): string {
  let url: URL;
  try {
    url = new URL(publicUrl);
  } catch {
    throw new TypeError(`startRelayEmulator: option publicUrl: "${publicUrl}" is not a URL; give e.g. wss://relay.example.com:443`);
  }
  const scheme = WEBSOCKET_SCHEMES[url.protocol];
  if (scheme === undefined) throw new TypeError(`startRelayEmulator: option publicUrl: the scheme must be wss, https, ws or http, got "${url.protocol}"`);
  if ((url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new TypeError(`startRelayEmulator: option publicUrl: give only a scheme, a host and a port, got "${publicUrl}"`);
  }
  return `${scheme}://${url.host}`;
}
