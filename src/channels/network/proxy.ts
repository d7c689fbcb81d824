/**
 * Which HTTPS proxy, if any, a connection to one address goes through: the explicit `proxy` option, or else
 * `https_proxy`/`HTTPS_PROXY` with `no_proxy`/`NO_PROXY`. storelink's connections are all meant for port 443 (the
 * emulators' plaintext ports are the only exception), so the HTTPS variables apply to every one of them and
 * `HTTP_PROXY` is not read. Pure logic: the environment is passed in.
 *
 * The password never leaves this module in text meant for people: `ResolvedProxy.display` and every error message
 * show it as `***`.
 */

/** The `proxy` option of the store agent, the dispatcher and their configs. `false`: no proxy, whatever the environment says. */
export type ProxyOptions =
  | {
      /** `http://host:port` (or `https://` for a proxy spoken to over TLS); credentials may be in the URL instead of below. */
      url: string;
      username?: string;
      password?: string;
      /** Hosts reached directly, as in NO_PROXY: `host`, `.suffix`, `*.suffix`, `host:port`, `*`. Default: none. */
      noProxy?: readonly string[];
    }
  | false;

export interface ResolvedProxy {
  /** The proxy's origin, without credentials: `http://proxy.example.com:3128`. */
  url: URL;
  username: string | undefined;
  password: string | undefined;
  /** For logs and messages: the URL with the password as `***`. */
  display: string;
}

/** The proxy rules in force for one side (store, cloud, tool): a proxy and its exceptions, or none. */
export interface ProxySettings {
  proxy: ResolvedProxy | undefined;
  noProxy: readonly NoProxyRule[];
  /** Where the proxy came from, for messages that say what to change. */
  source: 'option' | 'environment' | 'none';
}

interface NoProxyRule {
  /** `*`: everything. */
  any: boolean;
  /** Lower case, no brackets, no trailing dot. */
  host: string;
  /** A leading `.` or `*.`: sub-domains only. */
  suffixOnly: boolean;
  port: number | undefined;
}

export const NO_PROXY_SETTINGS: ProxySettings = Object.freeze({ proxy: undefined, noProxy: Object.freeze([]), source: 'none' });

function redactedDisplay(url: URL, username: string | undefined, password: string | undefined): string {
  if (username === undefined && password === undefined) return url.origin;
  const user = username === undefined ? '' : encodeURIComponent(username);
  const secret = password === undefined ? '' : ':***';
  return `${url.protocol}//${user}${secret}@${url.host}`;
}

/** A proxy URL with its password (if any) as `***`: safe for a log line or an error message. */
export function redactProxyUrl(text: string): string {
  return text.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/\s]*):[^@/\s]*@/i, '$1:***@');
}

/** Parses a proxy address; every message it throws is free of the password. */
export function parseProxyUrl(text: string, where: string, credentials: { username?: string; password?: string } = {}): ResolvedProxy {
  if (typeof text !== 'string' || text.trim().length === 0) throw new TypeError(`${where} must be a proxy URL such as http://proxy.example.com:3128`);
  // curl and most tools read `proxy:3128` as http://proxy:3128.
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text.trim()) ? text.trim() : `http://${text.trim()}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new TypeError(`${where} is not a URL: ${redactProxyUrl(withScheme)} (expected http://host:port)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TypeError(`${where} must be an http:// or https:// proxy (one that accepts CONNECT), got ${url.protocol}//`);
  }
  if (url.hostname.length === 0) throw new TypeError(`${where} names no host: ${redactProxyUrl(withScheme)}`);
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') {
    throw new TypeError(`${where} must be the proxy's address only (scheme, host, port), got ${redactProxyUrl(withScheme)}`);
  }
  const inUrl = url.username !== '' || url.password !== '';
  const given = credentials.username !== undefined || credentials.password !== undefined;
  if (inUrl && given) throw new TypeError(`${where}: give the proxy's credentials either in the URL or as username and password, not both`);
  const username = given ? credentials.username : url.username === '' ? undefined : decodeURIComponent(url.username);
  const password = given ? credentials.password : url.password === '' ? undefined : decodeURIComponent(url.password);
  if (password !== undefined && username === undefined) throw new TypeError(`${where}: a proxy password needs a username`);
  const origin = new URL(url.origin);
  return { url: origin, username, password, display: redactedDisplay(origin, username, password) };
}

function parseNoProxyRule(entry: string, where: string): NoProxyRule {
  const text = entry.trim().toLowerCase();
  if (text === '*') return { any: true, host: '', suffixOnly: false, port: undefined };
  let rest = text;
  let suffixOnly = false;
  if (rest.startsWith('*.')) {
    rest = rest.slice(1);
  }
  if (rest.startsWith('.')) {
    suffixOnly = true;
    rest = rest.slice(1);
  }
  let port: number | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(rest);
  if (bracketed !== null) {
    rest = bracketed[1]!;
    port = bracketed[2] === undefined ? undefined : Number(bracketed[2]);
  } else {
    const colon = rest.lastIndexOf(':');
    // One colon is host:port; more is a bare IPv6 address.
    if (colon > 0 && rest.indexOf(':') === colon) {
      const portText = rest.slice(colon + 1);
      if (!/^\d{1,5}$/.test(portText)) throw new TypeError(`${where}: "${entry}" has a port that is not a number`);
      port = Number(portText);
      rest = rest.slice(0, colon);
    }
  }
  rest = rest.replace(/\.$/, '');
  if (rest.length === 0 || /[\s/*]/.test(rest)) {
    throw new TypeError(`${where}: "${entry}" is not a host, .suffix, *.suffix, host:port or *`);
  }
  if (port !== undefined && (port < 1 || port > 65535)) throw new TypeError(`${where}: "${entry}" has a port out of range`);
  return { any: false, host: rest, suffixOnly, port };
}

/** NO_PROXY's text: entries separated by commas or white space. */
export function parseNoProxyList(entries: readonly string[] | string, where: string): NoProxyRule[] {
  const list = typeof entries === 'string' ? entries.split(/[\s,]+/) : entries;
  return list.filter((entry) => entry.trim().length > 0).map((entry) => parseNoProxyRule(entry, where));
}

/**
 * The proxy rules from the option, or from the environment when the option is absent. Throws TypeError, naming what
 * to fix, on a malformed option or variable.
 */
export function proxySettingsFrom(option: ProxyOptions | undefined, env: Readonly<Record<string, string | undefined>>): ProxySettings {
  if (option === false) return NO_PROXY_SETTINGS;
  if (option !== undefined) {
    if (typeof option !== 'object' || option === null) throw new TypeError('proxy must be { url, username?, password?, noProxy? } or false');
    if (option.noProxy !== undefined && !Array.isArray(option.noProxy)) throw new TypeError('proxy.noProxy must be a list of hosts');
    const credentials = {
      ...(option.username === undefined ? {} : { username: option.username }),
      ...(option.password === undefined ? {} : { password: option.password }),
    };
    return {
      proxy: parseProxyUrl(option.url, 'proxy.url', credentials),
      noProxy: parseNoProxyList(option.noProxy ?? [], 'proxy.noProxy'),
      source: 'option',
    };
  }
  const [name, value] = firstSet(env, ['https_proxy', 'HTTPS_PROXY']);
  if (name === undefined || value === undefined) return NO_PROXY_SETTINGS;
  const [noProxyName, noProxy] = firstSet(env, ['no_proxy', 'NO_PROXY']);
  return {
    proxy: parseProxyUrl(value, `the ${name} environment variable`),
    noProxy: parseNoProxyList(noProxy ?? '', `the ${noProxyName ?? 'NO_PROXY'} environment variable`),
    source: 'environment',
  };
}

function firstSet(env: Readonly<Record<string, string | undefined>>, names: readonly string[]): [string, string] | [undefined, undefined] {
  for (const name of names) {
    const value = env[name];
    if (value !== undefined && value.trim().length > 0) return [name, value];
  }
  return [undefined, undefined];
}

const DEFAULT_PORTS: Record<string, number> = { 'https:': 443, 'wss:': 443, 'http:': 80, 'ws:': 80, 'sb:': 443, 'amqps:': 5671, 'amqp:': 5672 };

function bypasses(rule: NoProxyRule, host: string, port: number): boolean {
  if (rule.any) return true;
  if (rule.port !== undefined && rule.port !== port) return false;
  if (host === rule.host) return !rule.suffixOnly;
  return host.endsWith(`.${rule.host}`);
}

/**
 * The proxy a connection to `target` goes through, or undefined to connect directly. A NO_PROXY `host` matches that
 * host and its sub-domains, `.host` and `*.host` its sub-domains only, `host:port` that port only, `*` everything.
 */
export function proxyFor(settings: ProxySettings, target: string | URL): ResolvedProxy | undefined {
  if (settings.proxy === undefined) return undefined;
  const url = typeof target === 'string' ? new URL(target) : target;
  const host = url.hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase();
  const port = url.port === '' ? (DEFAULT_PORTS[url.protocol] ?? 443) : Number(url.port);
  return settings.noProxy.some((rule) => bypasses(rule, host, port)) ? undefined : settings.proxy;
}

/** The `Proxy-Authorization` value for a proxy's credentials, or undefined when it has none. */
export function proxyAuthorization(proxy: ResolvedProxy): string | undefined {
  if (proxy.username === undefined) return undefined;
  return `Basic ${Buffer.from(`${proxy.username}:${proxy.password ?? ''}`).toString('base64')}`;
}
