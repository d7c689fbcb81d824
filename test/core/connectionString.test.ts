import { describe, expect, it } from 'vitest';
import {
  parseConnectionString,
  redactConnectionString,
  relayHttpUrl,
  relayListenUrl,
  relayTokenAudience,
  sasTokenFor,
} from '../../src/core/connectionString.js';
import { createSasToken, parseSasToken } from '../../src/core/sas.js';

const AZURE = 'Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=cloud-send;SharedAccessKey=c2VjcmV0';
const LOCAL = 'Endpoint=sb://127.0.0.1:9352;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;';

describe('parseConnectionString', () => {
  it('reads an Azure connection string', () => {
    expect(parseConnectionString(AZURE)).toEqual({
      host: 'contoso.servicebus.windows.net',
      port: undefined,
      keyName: 'cloud-send',
      key: 'c2VjcmV0',
      sharedAccessSignature: undefined,
      signatureExpiresAtInMs: undefined,
      signatureResource: undefined,
      entityPath: undefined,
      useDevelopmentEmulator: false,
    });
  });

  it('reads an emulator connection string with a port, in any field order and name case', () => {
    expect(parseConnectionString('usedevelopmentemulator=true; sharedaccesskey=k=v==; SharedAccessKeyName=n; endpoint=sb://LOCALHOST:5672/; EntityPath=q1')).toEqual({
      host: 'localhost',
      port: 5672,
      keyName: 'n',
      key: 'k=v==',
      sharedAccessSignature: undefined,
      signatureExpiresAtInMs: undefined,
      signatureResource: undefined,
      entityPath: 'q1',
      useDevelopmentEmulator: true,
    });
  });

  it.each([
    ['', 'it is empty'],
    ['SharedAccessKeyName=a;SharedAccessKey=b', '"Endpoint" is missing'],
    ['Endpoint=https://ns/;SharedAccessKeyName=a;SharedAccessKey=b', 'sb://'],
    ['Endpoint=sb://ns:99999/;SharedAccessKeyName=a;SharedAccessKey=b', 'out of range'],
    ['Endpoint=sb://ns/;SharedAccessKey=b', '"SharedAccessKeyName" missing'],
    ['Endpoint=sb://ns/;SharedAccessKeyName=a', '"SharedAccessKey" missing'],
    ['Endpoint=sb://ns/;SharedAccessKeyName=a;SharedAccessKey=b;UseDevelopmentEmulator=True', 'must be true or false'],
    ['Endpoint=sb://ns/;SharedAccessSignature=SharedAccessSignature sr=x', '"SharedAccessSignature": Malformed SAS token: missing "sig", "se", "skn"'],
    ['Endpoint=sb://ns/;SharedAccessSignature=Bearer abc', 'must start with "SharedAccessSignature "'],
    [`Endpoint=sb://ns/;SharedAccessSignature=${'SharedAccessSignature sr=a&sig=b&se=1&skn=c'};SharedAccessKeyName=a;SharedAccessKey=b`, 'not both'],
    ['Endpoint=sb://ns/;garbage', 'not a Name=value pair'],
  ])('rejects %j: %s', (text, message) => {
    expect(() => parseConnectionString(text)).toThrow(expect.objectContaining({ code: 'CONNECTION_STRING_INVALID', message: expect.stringContaining(message) }));
  });

  it('never puts the key in an error message', () => {
    try {
      parseConnectionString('Endpoint=ftp://x;SharedAccessKeyName=a;SharedAccessKey=TOPSECRET');
      expect.unreachable();
    } catch (error) {
      expect(String(error)).not.toContain('TOPSECRET');
    }
  });
});

describe('SharedAccessSignature connection strings', () => {
  const NOW = Date.UTC(2030, 0, 1);
  const token = createSasToken({ resource: 'sb://contoso.servicebus.windows.net/cloud-inbox', keyName: 'stores-send', key: 'k', timeToLiveInMs: 3_600_000, nowInMs: NOW });
  const text = `Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessSignature=${token};EntityPath=cloud-inbox`;

  it('reads a pre-issued token: its key name, resource and expiry, and no key', () => {
    expect(parseConnectionString(text)).toMatchObject({
      host: 'contoso.servicebus.windows.net',
      keyName: 'stores-send',
      key: undefined,
      sharedAccessSignature: token,
      signatureExpiresAtInMs: NOW + 3_600_000,
      signatureResource: 'sb://contoso.servicebus.windows.net/cloud-inbox',
      entityPath: 'cloud-inbox',
    });
  });

  it('sasTokenFor presents the pre-issued token until it expires, then says when it did', () => {
    const connection = parseConnectionString(text);
    expect(sasTokenFor(connection, 'ignored', { nowInMs: NOW + 3_599_000 })).toBe(token);
    expect(() => sasTokenFor(connection, 'ignored', { nowInMs: NOW + 3_600_000 })).toThrow(
      expect.objectContaining({ code: 'SAS_TOKEN_EXPIRED', message: expect.stringContaining('expired at 2030-01-01T01:00:00.000Z') }),
    );
  });

  it('sasTokenFor signs a fresh token for the audience from a key', () => {
    const made = sasTokenFor(parseConnectionString(AZURE), 'http://contoso.servicebus.windows.net/hc', { nowInMs: NOW, timeToLiveInMs: 60_000 });
    expect(parseSasToken(made)).toMatchObject({ resource: 'http://contoso.servicebus.windows.net/hc', keyName: 'cloud-send', expiresOnInSeconds: NOW / 1000 + 60 });
  });

  it('redacts the token for logs', () => {
    expect(redactConnectionString(text)).not.toContain('sig=');
  });
});

describe('relay addresses', () => {
  it('use TLS on 443 for Azure', () => {
    const azure = parseConnectionString(AZURE);
    expect(relayHttpUrl(azure, 'store-paris-1')).toBe('https://contoso.servicebus.windows.net:443/store-paris-1');
    expect(relayListenUrl(azure, 'store-paris-1')).toBe('wss://contoso.servicebus.windows.net:443/$hc/store-paris-1?sb-hc-action=listen');
    expect(relayTokenAudience(azure, 'store-paris-1')).toBe('http://contoso.servicebus.windows.net:443/store-paris-1');
  });

  it('use plain HTTP and WebSocket on the given port for the emulator', () => {
    const local = parseConnectionString(LOCAL);
    expect(relayHttpUrl(local, 'store-1')).toBe('http://127.0.0.1:9352/store-1');
    expect(relayListenUrl(local, 'store-1')).toBe('ws://127.0.0.1:9352/$hc/store-1?sb-hc-action=listen');
    expect(relayTokenAudience(local, 'store-1')).toBe('http://127.0.0.1:9352/store-1');
  });
});

describe('redactConnectionString', () => {
  it('hides keys and signatures', () => {
    expect(redactConnectionString(AZURE)).toBe('Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=cloud-send;SharedAccessKey=***');
    expect(redactConnectionString('Endpoint=sb://x/;SharedAccessSignature=SharedAccessSignature sr=a&sig=b')).not.toContain('sig=b');
  });
});
