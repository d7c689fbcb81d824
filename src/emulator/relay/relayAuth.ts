/**
 * SAS checks of the relay (spec §3.3): which token a caller presented, whether it is genuine and current, whether its
 * audience covers the hybrid connection, and whether its policy grants the claim the action needs.
 */
import { audienceCovers, sasFailurePrefixOf, verifySasToken } from '../../core/sas.js';
import type { ResolvedHybridConnection, ResolvedPolicy } from './relayEmulatorOptions.js';

export type RelayClaim = 'Listen' | 'Send';

export type AuthorizationResult =
  | { ok: true; keyName: string; expiresAtMs: number }
  | { ok: false; status: 401 | 403; description: string };

export interface AuthorizeOptions {
  token: string | undefined;
  hybridConnection: ResolvedHybridConnection;
  namespacePolicies: ReadonlyMap<string, ResolvedPolicy>;
  claim: RelayClaim;
  /** The host name the caller used (Host header), port ignored. */
  host: string;
  lenientAudience: boolean;
  clockSkewInMs: number;
  nowInMs: number;
}

function findPolicy(
  keyName: string,
  hybridConnection: ResolvedHybridConnection,
  namespacePolicies: ReadonlyMap<string, ResolvedPolicy>,
): ResolvedPolicy | undefined {
  return hybridConnection.policies.get(keyName) ?? namespacePolicies.get(keyName);
}

export function authorize(options: AuthorizeOptions): AuthorizationResult {
  const { token, hybridConnection, namespacePolicies, claim } = options;
  if (token === undefined || token.trim().length === 0) {
    return {
      ok: false,
      status: 401,
      description: 'MissingToken: The request has no SAS token in the ServiceBusAuthorization header or the sb-hc-token query parameter.',
    };
  }
  let verified;
  try {
    verified = verifySasToken(token.trim(), {
      keysFor: (keyName) => findPolicy(keyName, hybridConnection, namespacePolicies)?.keys,
      nowInMs: options.nowInMs,
      clockSkewInMs: options.clockSkewInMs,
    });
  } catch (error) {
    const prefix = sasFailurePrefixOf(error);
    // Like Azure, a bad signature does not say whether the key name or the signature was wrong.
    if (prefix === 'InvalidSignature') return { ok: false, status: 401, description: 'InvalidSignature: The token has an invalid signature.' };
    if (prefix === 'InvalidToken') return { ok: false, status: 401, description: 'InvalidToken: The token could not be verified.' };
    return { ok: false, status: 401, description: `${prefix}: ${(error as Error).message}.` };
  }
  const target = `http://${options.host}/${hybridConnection.name}`;
  const audienceOk =
    audienceCovers(verified.resource, target) || (options.lenientAudience && audienceCovers(target, verified.resource));
  if (!audienceOk) {
    return {
      ok: false,
      status: 403,
      description: 'InvalidAudience: The authorization header contains a token with a wrong audience.',
    };
  }
  const policy = findPolicy(verified.keyName, hybridConnection, namespacePolicies)!;
  const granted = claim === 'Listen' ? policy.canListen : policy.canSend;
  if (!granted) {
    return {
      ok: false,
      status: 403,
      description: `Unauthorized access. '${claim}' claim(s) are required to perform this operation.`,
    };
  }
  return { ok: true, keyName: verified.keyName, expiresAtMs: verified.expiresOnInSeconds * 1000 };
}

/** Strips the port from a Host header value (`127.0.0.1:9090`, `[::1]:9090`). */
export function hostWithoutPort(hostHeader: string | undefined, fallback: string): string {
  if (hostHeader === undefined || hostHeader.length === 0) return fallback;
  if (hostHeader.startsWith('[')) {
    const end = hostHeader.indexOf(']');
    return end < 0 ? hostHeader : hostHeader.slice(0, end + 1);
  }
  const colon = hostHeader.lastIndexOf(':');
  return colon < 0 ? hostHeader : hostHeader.slice(0, colon);
}
