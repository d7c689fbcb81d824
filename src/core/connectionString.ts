/**
 * Azure Service Bus / Relay connection strings:
 * `Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…[;EntityPath=…]`.
 * With `UseDevelopmentEmulator=true` (lower-case, as the Service Bus SDK requires) the same string points at a local
 * emulator over plain TCP/HTTP/WebSocket on the host and port given; otherwise TLS on the standard ports.
 */
import { StorelinkError } from './errors.js';

export interface ConnectionString {
  /** Namespace host, lower-cased, without port: `contoso.servicebus.windows.net` or `127.0.0.1`. */
  host: string;
  /** The port from the endpoint, if one was given. */
  port: number | undefined;
  keyName: string;
  key: string;
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
  if (fields.has('sharedaccesssignature')) {
    throw invalid('a "SharedAccessSignature" string is not supported here: use SharedAccessKeyName and SharedAccessKey');
  }
  const keyName = fields.get('sharedaccesskeyname');
  const key = fields.get('sharedaccesskey');
  const missing = [keyName ? undefined : 'SharedAccessKeyName', key ? undefined : 'SharedAccessKey'].filter(Boolean);
  if (missing.length > 0) throw invalid(`${missing.map((name) => `"${name}"`).join(' and ')} missing`);
  const emulator = fields.get('usedevelopmentemulator');
  if (emulator !== undefined && emulator !== 'true' && emulator !== 'false') {
    throw invalid(`"UseDevelopmentEmulator" must be true or false, got "${emulator}"`);
  }
  return {
    host: match[1]!.toLowerCase(),
    port,
    keyName: keyName!,
    key: key!,
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

/** The connection string with its key replaced, for logs. */
export function redactConnectionString(text: string): string {
  return text.replace(/(SharedAccessKey|SharedAccessSignature)=[^;]*/gi, '$1=***');
}
