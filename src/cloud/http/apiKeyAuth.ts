/**
 * Who may call a route: every request carries `Authorization: Bearer <name>.<secret>`, one of the API keys valid now
 * (401 API_UNAUTHORIZED otherwise), and the route's scope must be among the key's (403 API_FORBIDDEN otherwise, naming
 * the scope). Each route says its scope in its config (`config: { scope }`); the API refuses to register a route that
 * does not, so a new route cannot be open to every key by omission.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { StorelinkError, isStorelinkError } from '../../core/errors.js';
import type { ApiClient, ApiScope } from '../apiKeys.js';
import type { ApiKeySource } from '../apiKeyFile.js';

/**
 * A route's scope; `authenticated`: any valid key (the 404 and 405 answers, which tell nothing); `public`: no key at
 * all, only for the console's static files (its sign-in page), which hold no data.
 */
export type RouteScope = ApiScope | 'authenticated' | 'public';

declare module 'fastify' {
  interface FastifyContextConfig {
    scope?: RouteScope;
  }
}

/** Longest Authorization header value looked at: a key is about 110 characters. */
const MAX_AUTHORIZATION_LENGTH = 512;

export type Admission = { client?: ApiClient; refused?: undefined } | { client?: ApiClient; refused: StorelinkError };

/**
 * Admits a request or says why not, setting `WWW-Authenticate` on a refusal. `scope` is the route's, or undefined
 * when no route matched (then any valid key is enough to learn there is nothing there).
 */
export type ApiKeyCheck = (request: FastifyRequest, reply: FastifyReply, scope: RouteScope | undefined) => Promise<Admission>;

function bearerOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization ?? '';
  return header.length <= MAX_AUTHORIZATION_LENGTH ? /^Bearer +(\S+) *$/i.exec(header)?.[1] : undefined;
}

export function createApiKeyCheck(source: ApiKeySource, now: () => number): ApiKeyCheck {
  return async (request, reply, scope) => {
    if (scope === 'public') return {};
    const presented = bearerOf(request);
    let client: ApiClient | undefined;
    try {
      client = presented === undefined ? undefined : (await source.current()).authenticate(presented, now());
    } catch (error) {
      if (isStorelinkError(error)) return { refused: error };
      throw error;
    }
    if (client === undefined) {
      void reply.header('www-authenticate', presented === undefined ? 'Bearer realm="storelink"' : 'Bearer realm="storelink", error="invalid_token"');
      const message =
        presented === undefined
          ? 'send an API key as "Authorization: Bearer <name>.<secret>" (storelink apikeys create makes one)'
          : 'the API key is unknown, revoked or expired, or its secret is wrong';
      return { refused: new StorelinkError('API_UNAUTHORIZED', message) };
    }
    if (scope === undefined || scope === 'authenticated' || client.scopes.includes(scope)) return { client };
    void reply.header('www-authenticate', `Bearer realm="storelink", error="insufficient_scope", scope="${scope}"`);
    const route = `${request.method} ${request.routeOptions.url ?? ''}`;
    return { client, refused: new StorelinkError('API_FORBIDDEN', `${route} needs an API key with the "${scope}" scope`) };
  };
}

/**
 * Whether a request admitted earlier would still be admitted with `scope`: for what outlives its request's admission
 * (an event stream), so a key revoked or expired meanwhile stops it.
 */
export function createStillAdmitted(source: ApiKeySource, now: () => number): (request: FastifyRequest, scope: ApiScope) => Promise<boolean> {
  return async (request, scope) => {
    const presented = bearerOf(request);
    if (presented === undefined) return false;
    try {
      return (await source.current()).authenticate(presented, now())?.scopes.includes(scope) === true;
    } catch {
      return false;
    }
  };
}

/** The key a request presents, if it is valid now: who is calling and with which scopes (the console's `GET /session`). */
export function createIdentify(source: ApiKeySource, now: () => number): (request: FastifyRequest) => Promise<ApiClient | undefined> {
  return async (request) => {
    const presented = bearerOf(request);
    if (presented === undefined) return undefined;
    return (await source.current()).authenticate(presented, now());
  };
}
