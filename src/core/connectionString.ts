/**
 * Azure Service Bus / Relay connection strings:
 * `Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…[;EntityPath=…]`, or with a
 * pre-issued token instead of a key: `Endpoint=sb://…/;SharedAccessSignature=SharedAccessSignature sr=…&sig=…&se=…&skn=…`
 * (the holder can then do only what that token allows, on the resource it names, until it expires).
 * With `UseDevelopmentEmulator=true` (lower-case, as the Service Bus SDK requires) the same string points at a local
 * emulator over plain TCP/HTTP/WebSocket on the host and port given; otherwise TLS on the standard ports.
 */
import { StorelinkError } from './errors.js';
import { createSasToken, parseSasToken } from './sas.js';

export interface ConnectionString {
  /** Namespace host, lower-cased, without port: `contoso.servicebus.windows.net` or `127.0.0.1`. */
  host: string;
  /** The port from the endpoint, if one was given. */
  port: number | undefined;
  /** The key name, or the `skn` of a pre-issued token. */
  keyName: string;
  /** Undefined when the string carries a pre-issued token instead of a key. */
  key: string | undefined;
  /** The pre-issued token (`SharedAccessSignature sr=…&sig=…&se=…&skn=…`), used as is. */
  sharedAccessSignature: string | undefined;
  /** When the pre-issued token expires, in ms since the epoch. */
  signatureExpiresAtInMs: number | undefined;
  /** The resource the pre-issued token was issued for (its `sr`, decoded). */
  signatureResource: string | undefined;
  entityPath: string | undefined;
  /** True for a local emulator: plain TCP/HTTP/WS instead of TLS. */
  useDevelopmentEmulator: boolean;
}

function invalid(message: string): StorelinkError {
  return new StorelinkError('CONNECTION_STRING_INVALID', `Invalid connection string: ${message}`);
}

/** Parses a connection string. Error messages never contain the key. */
export function parseConnectionString(text: string): ConnectionString {
  if (typeof text !== 'string' || text.trim().length === 0) throw invalid('it is empty');
  const fields = new Map<string, string>();
  for (const part of text.split(';')) {
    const trimmed = part.trim();
    if (trimmed.length === 0) continue;
    const separator = trimmed.indexOf('=');
    if (separator <= 0) throw invalid(`"${trimmed.slice(0, 40)}" is not a Name=value pair`);
    fields.set(trimmed.slice(0, separator).trim().toLowerCase(), trimmed.slice(separator + 1).trim());
  }
  const endpoint = fields.get('endpoint');
  if (endpoint === undefined) throw invalid('"Endpoint" is missing');
  const match = /^sb:\/\/([^/:]+|\[[^\]]+\])(?::(\d{1,5}))?\/?$/i.exec(endpoint);
  if (match === null) throw invalid(`"Endpoint" must look like sb://<namespace host>[:port]/, got "${endpoint}"`);
  const port = match[2] === undefined ? undefined : Number(match[2]);
  if (port !== undefined && (port < 1 || port > 65535)) throw invalid(`port ${port} is out of range`);
  const signature = fields.get('sharedaccesssignature');
  const keyName = fields.get('sharedaccesskeyname');
  const key = fields.get('sharedaccesskey');
  let token: ReturnType<typeof parseSasToken> | undefined;
  if (signature !== undefined) {
    if (keyName !== undefined || key !== undefined) {
      throw invalid('give either "SharedAccessSignature" or "SharedAccessKeyName" and "SharedAccessKey", not both');
    }
    try {
      token = parseSasToken(signature);
    } catch (cause) {
      // The token's own message names the faulty field, never its signature.
      throw new StorelinkError('CONNECTION_STRING_INVALID', `Invalid connection string: "SharedAccessSignature": ${(cause as Error).message}`, { cause });
    }
  } else {
    const missing = [keyName ? undefined : 'SharedAccessKeyName', key ? undefined : 'SharedAccessKey'].filter(Boolean);
    if (missing.length > 0) throw invalid(`${missing.map((name) => `"${name}"`).join(' and ')} missing (or give a "SharedAccessSignature")`);
  }
  const emulator = fields.get('usedevelopmentemulator');
  if (emulator !== undefined && emulator !== 'true' && emulator !== 'false') {
    throw invalid(`"UseDevelopmentEmulator" must be true or false, got "${emulator}"`);
  }
  return {
    host: match[1]!.toLowerCase(),
    port,
    keyName: token?.keyName ?? keyName!,
    key: token === undefined ? key! : undefined,
    sharedAccessSignature: token === undefined ? undefined : signature,
    signatureExpiresAtInMs: token === undefined ? undefined : token.expiresOnInSeconds * 1000,
    signatureResource: token?.resource,
    entityPath: fields.get('entitypath') || undefined,
    useDevelopmentEmulator: emulator === 'true',
  };
}

function authority(connection: ConnectionString, defaultPort: number): string {
  const port = connection.port ?? defaultPort;
  return `${connection.host}:${port}`;
}

/** Base URL for HTTP senders to a hybrid connection: `https://ns:443/<hc>` on Azure, `http://host:port/<hc>` locally. */
export function relayHttpUrl(connection: ConnectionString, hybridConnection: string): string {
  const scheme = connection.useDevelopmentEmulator ? 'http' : 'https';
  const port = connection.useDevelopmentEmulator ? 80 : 443;
  return `${scheme}://${authority(connection, port)}/${encodeURI(hybridConnection)}`;
}

/** The listener's control channel URL: `wss://ns:443/$hc/<hc>?sb-hc-action=listen` (ws locally). */
export function relayListenUrl(connection: ConnectionString, hybridConnection: string): string {
  const scheme = connection.useDevelopmentEmulator ? 'ws' : 'wss';
  const port = connection.useDevelopmentEmulator ? 80 : 443;
  return `${scheme}://${authority(connection, port)}/$hc/${encodeURI(hybridConnection)}?sb-hc-action=listen`;
}

/** The SAS audience for a hybrid connection, as hyco-https builds it: `http://host:port/<hc>`. */
export function relayTokenAudience(connection: ConnectionString, hybridConnection: string): string {
  const port = connection.useDevelopmentEmulator ? 80 : 443;
  return `http://${authority(connection, port)}/${hybridConnection}`;
}

export interface TokenForOptions {
  /** Lifetime of a token made from the key; default one hour. */
  timeToLiveInMs?: number;
  nowInMs?: number;
}

/**
 * The SAS token to present for `audience`: made from the key, or the pre-issued one as it is. An expired pre-issued
 * token throws SAS_TOKEN_EXPIRED saying when it expired: only a new connection string helps.
 */
export function sasTokenFor(connection: ConnectionString, audience: string, options: TokenForOptions = {}): string {
  const nowInMs = options.nowInMs ?? Date.now();
  if (connection.sharedAccessSignature !== undefined) {
    const expiresAt = connection.signatureExpiresAtInMs!;
    if (expiresAt <= nowInMs) {
      throw new StorelinkError(
        'SAS_TOKEN_EXPIRED',
        `the SharedAccessSignature of the connection string (key "${connection.keyName}", for ${connection.signatureResource}) expired at ${new Date(expiresAt).toISOString()}: ask for a new one`,
      );
    }
    return connection.sharedAccessSignature;
  }
  return createSasToken({
    resource: audience,
    keyName: connection.keyName,
    key: connection.key!,
    ...(options.timeToLiveInMs === undefined ? {} : { timeToLiveInMs: options.timeToLiveInMs }),
    nowInMs,
  });
}

/** The connection string with its key replaced, for logs. */
export function redactConnectionString(text: string): string {
  return text.replace(/(SharedAccessKey|SharedAccessSignature)=[^;]*/gi, '$1=***');
}
