/**
 * Which key signs for what, as Azure Service Bus decides it. A token names its key (`skn`) and its resource (`sr`);
 * the key is looked up first among the authorization rules of the queue or topic the resource lies in (its path or
 * a path under it), then among the namespace's policies. A rule of an entity therefore signs for that entity only:
 * a token for `sb://ns/` (or for another entity) signed with it names a key that does not exist there.
 */
import { MAX_AUTHORIZATION_RULES_PER_ENTITY, type AccessRight, type SharedAccessPolicy } from './options.js';

const RIGHTS: readonly AccessRight[] = ['Listen', 'Send', 'Manage'];

/** Throws a TypeError naming the field to fix: non-empty names and keys, known rights, no name twice, at most `max`. */
export function checkAccessPolicies(where: string, policies: unknown, options: { allowEmpty: boolean; max?: number }): void {
  if (!Array.isArray(policies)) throw new TypeError(`${where} must be an array of { keyName, primaryKey, secondaryKey?, rights }`);
  if (!options.allowEmpty && policies.length === 0) throw new TypeError(`${where} must hold at least one policy`);
  if (options.max !== undefined && policies.length > options.max) {
    throw new TypeError(`${where} holds ${policies.length} rules; Azure allows at most ${options.max} on one entity`);
  }
  const names = new Set<string>();
  policies.forEach((value: unknown, index) => {
    const policy = (typeof value === 'object' && value !== null ? value : {}) as Partial<SharedAccessPolicy>;
    if (typeof policy.keyName !== 'string' || policy.keyName.length === 0 || policy.keyName.length > 256) {
      throw new TypeError(`${where}[${index}].keyName must be a non-empty string of at most 256 characters`);
    }
    if (typeof policy.primaryKey !== 'string' || policy.primaryKey.length === 0) throw new TypeError(`${where}[${index}].primaryKey must be a non-empty string`);
    if (policy.secondaryKey !== undefined && (typeof policy.secondaryKey !== 'string' || policy.secondaryKey.length === 0)) {
      throw new TypeError(`${where}[${index}].secondaryKey must be a non-empty string when given`);
    }
    if (!Array.isArray(policy.rights) || policy.rights.length === 0 || policy.rights.some((right) => !RIGHTS.includes(right))) {
      throw new TypeError(`${where}[${index}].rights must list 'Listen', 'Send' and/or 'Manage'`);
    }
    if (names.has(policy.keyName)) throw new TypeError(`${where}[${index}].keyName "${policy.keyName}" is used twice`);
    names.add(policy.keyName);
  });
}

export function checkAuthorizationRules(where: string, rules: unknown): void {
  if (rules === undefined) return;
  checkAccessPolicies(where, rules, { allowEmpty: true, max: MAX_AUTHORIZATION_RULES_PER_ENTITY });
}

/** The entity path of an address or a token's resource: no scheme or host, no slashes around it, lower case. */
export function entityPathOf(address: string): string {
  let path = address.trim();
  const scheme = /^[a-z][a-z0-9+.-]*:\/\/[^/]*/i.exec(path);
  if (scheme !== null) path = path.slice(scheme[0].length);
  return path.replace(/^\/+|\/+$/g, '').toLowerCase();
}

/** What rules an entity carries, as far as authorization goes. */
export interface RuleHolder {
  /** Lower-case entity path (`store-alpha`, `events`). */
  readonly path: string;
  readonly authorizationRules: readonly SharedAccessPolicy[];
}

/**
 * The queue or topic a path lies in: the longest leading run of whole segments that names one (entity names may hold
 * `/`). `store-alpha/$deadletterqueue` lies in `store-alpha`; `events/subscriptions/s1` in `events`; `` in none.
 */
export function holderOf(path: string, find: (entityPath: string) => RuleHolder | undefined): RuleHolder | undefined {
  const segments = path.split('/').filter((segment) => segment.length > 0);
  for (let length = segments.length; length > 0; length--) {
    const found = find(segments.slice(0, length).join('/'));
    if (found !== undefined) return found;
  }
  return undefined;
}

export interface SigningKey {
  policy: SharedAccessPolicy;
  /** The entity whose rule it is; undefined for a namespace policy, valid everywhere in the namespace. */
  entity: RuleHolder | undefined;
}

/** The key a token's `skn` names, looked up where its `sr` lies: that entity's rules first, then the namespace's policies. */
export function signingKeyFor(
  keyName: string,
  resourcePath: string,
  namespacePolicies: readonly SharedAccessPolicy[],
  find: (entityPath: string) => RuleHolder | undefined,
): SigningKey | undefined {
  const entity = holderOf(resourcePath, find);
  const rule = entity?.authorizationRules.find((candidate) => candidate.keyName === keyName);
  if (rule !== undefined) return { policy: rule, entity };
  const policy = namespacePolicies.find((candidate) => candidate.keyName === keyName);
  return policy === undefined ? undefined : { policy, entity: undefined };
}

/** Whether a key's scope reaches a path: a namespace policy everywhere, an entity's rule within that entity. */
export function scopeCovers(key: SigningKey, path: string, find: (entityPath: string) => RuleHolder | undefined): boolean {
  return key.entity === undefined || holderOf(path, find)?.path === key.entity.path;
}
