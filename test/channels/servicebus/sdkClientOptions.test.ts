/** What createSdkClient hands the Service Bus SDK for each transport: pure logic, no connection. */
import { HttpsProxyAgent } from 'https-proxy-agent';
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { proxySettingsFrom } from '../../../src/channels/network/proxy.js';
import { DEFAULT_RETRY, sdkClientOptions, type SdkClientSettings } from '../../../src/channels/servicebus/serviceBusConnection.js';
import { parseConnectionString } from '../../../src/core/connectionString.js';

const AZURE = parseConnectionString('Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=store;SharedAccessKey=k');
const EMULATOR = parseConnectionString('Endpoint=sb://127.0.0.1:5672/;SharedAccessKeyName=store;SharedAccessKey=k;UseDevelopmentEmulator=true');
const PROXY = proxySettingsFrom({ url: 'http://proxy.corp:3128', username: 'store', password: 's3cret' }, {});
const NONE = proxySettingsFrom(undefined, {});

function settings(overrides: Partial<SdkClientSettings>): SdkClientSettings {
  return { connection: AZURE, transport: 'websockets', proxy: NONE, ...overrides };
}

function failure(run: () => unknown): Error {
  try {
    run();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a TypeError');
}

describe('sdkClientOptions', () => {
  it("websockets: the ws package as the SDK's WebSocket, storelink's retries, nothing else without proxy or CA", () => {
    const options = sdkClientOptions(settings({}));
    expect(options.webSocketOptions?.webSocket).toBe(WebSocket);
    expect(options.webSocketOptions?.webSocketConstructorOptions).toEqual({});
    expect(options.retryOptions).toMatchObject({ ...DEFAULT_RETRY, mode: expect.anything() });
    expect(options.customEndpointAddress).toBeUndefined();
  });

  it('websockets through a proxy: an agent that CONNECTs to the proxy with Basic credentials, and the extra CA for the service', () => {
    const ca = ['-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n'];
    const constructorOptions = sdkClientOptions(settings({ proxy: PROXY, ca })).webSocketOptions?.webSocketConstructorOptions as WebSocket.ClientOptions;
    expect(constructorOptions.agent).toBeInstanceOf(HttpsProxyAgent);
    const agent = constructorOptions.agent as HttpsProxyAgent<string>;
    expect(agent.proxy.href).toBe('http://proxy.corp:3128/');
    expect(agent.proxyHeaders).toEqual({ 'Proxy-Authorization': `Basic ${Buffer.from('store:s3cret').toString('base64')}` });
    expect(constructorOptions.ca).toEqual(ca);
  });

  it('decides the proxy on the host it connects to: the endpoint address when given', () => {
    const exempt = proxySettingsFrom({ url: 'http://proxy.corp:3128', noProxy: ['gateway.corp'] }, {});
    const options = sdkClientOptions(settings({ proxy: exempt, endpointAddress: 'https://gateway.corp:443' }));
    expect(options.customEndpointAddress).toBe('https://gateway.corp:443');
    expect((options.webSocketOptions?.webSocketConstructorOptions as WebSocket.ClientOptions).agent).toBeUndefined();
    const direct = sdkClientOptions(settings({ proxy: exempt }));
    expect((direct.webSocketOptions?.webSocketConstructorOptions as WebSocket.ClientOptions).agent).toBeInstanceOf(HttpsProxyAgent);
  });

  it('amqp: no WebSocket at all', () => {
    const options = sdkClientOptions(settings({ transport: 'amqp', connection: EMULATOR }));
    expect(options.webSocketOptions).toBeUndefined();
    expect(sdkClientOptions(settings({ transport: 'amqp', proxy: proxySettingsFrom({ url: 'http://p:1', noProxy: ['contoso.servicebus.windows.net'] }, {}) })).webSocketOptions).toBeUndefined();
  });

  it('amqp with a proxy that applies is a configuration error saying why and what to change, without the password', () => {
    const error = failure(() => sdkClientOptions(settings({ transport: 'amqp', proxy: PROXY })));
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toMatch(/transport 'amqp' \(AMQP over TCP to contoso\.servicebus\.windows\.net:5671\) cannot go through an HTTPS proxy/);
    expect(error.message).toContain("set serviceBus.transport to 'websockets'");
    expect(error.message).toContain('http://store:***@proxy.corp:3128');
    expect(error.message).not.toContain('s3cret');
  });

  it('amqp leaves a proxy from HTTPS_PROXY alone: it speaks for HTTPS, which AMQP over TCP is not', () => {
    const options = sdkClientOptions(settings({ transport: 'amqp', proxy: proxySettingsFrom(undefined, { HTTPS_PROXY: 'http://p:3128' }) }));
    expect(options.webSocketOptions).toBeUndefined();
  });

  it('amqp with an extra CA is a configuration error: the SDK takes no CA for AMQP over TCP', () => {
    expect(() => sdkClientOptions(settings({ transport: 'amqp', ca: ['pem'] }))).toThrow(/tls\.caFile cannot apply to Service Bus transport 'amqp'.*NODE_EXTRA_CA_CERTS/);
  });

  it.each([
    [{ transport: 'tcp' as never }, /transport must be 'websockets' or 'amqp', got "tcp"/],
    [{ endpointAddress: 'gateway.corp' }, /endpointAddress must be a URL such as https:\/\/host:443/],
    [{ endpointAddress: 'ftp://gateway.corp' }, /endpointAddress must be a URL/],
    [{ endpointAddress: 'https://gateway.corp/path' }, /scheme, host and port only/],
  ])('refuses %j', (overrides, message) => {
    expect(() => sdkClientOptions(settings(overrides))).toThrow(message);
  });
});
