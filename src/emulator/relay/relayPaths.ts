/**
 * Request-target handling: splitting path and query, resolving the hybrid connection a path addresses, and removing
 * the relay's own `sb-hc-*` query parameters without disturbing the rest of the query text.
 */

export interface RequestTarget {
  /** The raw (still encoded) path, always starting with `/`. */
  path: string;
  /** The raw query text without the `?`, or undefined when the target has no `?`. */
  query: string | undefined;
}

/** Splits an origin-form (`/a/b?c`) or absolute-form (`http://h/a/b?c`) target; undefined when it is neither. */
export function splitRequestTarget(rawUrl: string): RequestTarget | undefined {
  let target = rawUrl;
  if (!target.startsWith('/')) {
    const match = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(target);
    if (match === null) return undefined;
    target = target.slice(match[0].length);
    if (!target.startsWith('/')) target = `/${target}`;
  }
  const hash = target.indexOf('#');
  if (hash >= 0) target = target.slice(0, hash);
  const question = target.indexOf('?');
  if (question < 0) return { path: target, query: undefined };
  return { path: target.slice(0, question), query: target.slice(question + 1) };
}

/** URL-decodes a path segment by segment; undefined when the encoding is invalid. */
export function decodePath(path: string): string | undefined {
  try {
    return path
      .split('/')
      .map((segment) => decodeURIComponent(segment))
      .join('/');
  } catch {
    return undefined;
  }
}

export interface EntityMatch<T> {
  entity: T;
  /** What follows the entity name (with its leading `/`), or the empty string. */
  suffix: string;
}

/**
 * Picks the longest entity name that equals the path or is followed by `/` in it, case-insensitively. `path` is the
 * decoded path relative to the entity root, without a leading `/`.
 */
export function resolveEntity<T extends { name: string }>(entities: Iterable<T>, path: string): EntityMatch<T> | undefined {
  const wanted = path.toLowerCase();
  let best: T | undefined;
  for (const entity of entities) {
    const name = entity.name.toLowerCase();
    const matches = wanted === name || (wanted.startsWith(name) && wanted.charAt(name.length) === '/');
    if (matches && (best === undefined || name.length > best.name.length)) best = entity;
  }
  if (best === undefined) return undefined;
  return { entity: best, suffix: path.slice(best.name.length) };
}

/** The name an auto-created entity gets from a path: the whole path for a listener, the first segment for a sender. */
export function autoCreatedName(path: string, wholePath: boolean): string | undefined {
  const trimmed = path.replace(/\/+$/, '');
  const name = wholePath ? trimmed : trimmed.split('/')[0]!;
  if (name.length === 0 || name.length > 260 || name.includes('//') || /[?#\\\s]/.test(name)) return undefined;
  if (name.toLowerCase() === '$hc' || name.toLowerCase().startsWith('$hc/')) return undefined;
  return name;
}

/** The decoded value of the first query parameter named `name` (case-insensitive); undefined when absent or undecodable. */
export function queryValue(query: string | undefined, name: string): string | undefined {
  if (query === undefined) return undefined;
  const wanted = name.toLowerCase();
  for (const pair of query.split('&')) {
    const separator = pair.indexOf('=');
    if (separator < 0) continue;
    if (pair.slice(0, separator).toLowerCase() !== wanted) continue;
    try {
      return decodeURIComponent(pair.slice(separator + 1));
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/**
 * Removes every `sb-hc-<name>=<value>` pair (a bare `sb-hc-foo` without `=` stays), leaving the other pairs exactly as
 * written, in order. Returns undefined when the query had no `?` or nothing is left after removal.
 */
export function stripRelayQuery(query: string | undefined): string | undefined {
  if (query === undefined) return undefined;
  const pairs = query.split('&');
  const kept = pairs.filter((pair) => !(pair.includes('=') && /^sb-hc-/i.test(pair)));
  if (kept.length === pairs.length) return query;
  const rest = kept.join('&');
  return rest.length === 0 ? undefined : rest;
}

export function joinTarget(path: string, query: string | undefined): string {
  return query === undefined ? path : `${path}?${query}`;
}
