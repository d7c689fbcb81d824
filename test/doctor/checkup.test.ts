import { describe, expect, it } from 'vitest';
import { Checkup, fail, pass, renderTable } from '../../src/doctor/checkup.js';
import { proxySettingsFrom } from '../../src/channels/network/proxy.js';
import { parseConnectionString } from '../../src/core/connectionString.js';
import { relayEndpoint, serviceBusEndpoint } from '../../src/doctor/endpointChecks.js';

describe('Checkup', () => {
  it('records verdicts, skips what needs a failed check, and fails a check that outlives its timeout', async () => {
    const checkup = new Checkup(20);
    await checkup.check({ id: 'a', title: 'a works', run: () => Promise.resolve(pass('fine')) });
    await checkup.check({ id: 'b', title: 'b works', run: () => Promise.resolve(fail('broken', 'mend b')) });
    let ranC = false;
    await checkup.check({ id: 'c', title: 'c after b', needs: ['b'], run: () => ((ranC = true), Promise.resolve(pass('never'))) });
    let aborted = false;
    await checkup.check({
      id: 'd',
      title: 'd hangs',
      onTimeout: 'open the port',
      run: (signal) => new Promise(() => signal.addEventListener('abort', () => (aborted = true))),
    });
    await checkup.check({ id: 'e', title: 'e throws', run: () => Promise.reject(new Error('boom')) });
    const report = checkup.report('store');
    expect(ranC).toBe(false);
    expect(aborted).toBe(true);
    expect(report.ok).toBe(false);
    expect(report.checks).toEqual([
      { id: 'a', title: 'a works', ok: true, detail: 'fine' },
      { id: 'b', title: 'b works', ok: false, detail: 'broken', advice: 'mend b' },
      { id: 'c', title: 'c after b', ok: false, skipped: true, detail: 'not tried: b did not pass', advice: 'fix b first' },
      { id: 'd', title: 'd hangs', ok: false, detail: 'no answer within 20 ms', advice: 'open the port' },
      { id: 'e', title: 'e throws', ok: false, detail: 'boom', advice: 'see the detail' },
    ]);
  });

  it('renders aligned columns with ✔, ✗ and – and a summary', async () => {
    const checkup = new Checkup(1000);
    await checkup.check({ id: 'a', title: 'short', run: () => Promise.resolve(pass('ok')) });
    await checkup.check({ id: 'b', title: 'a longer title', run: () => Promise.resolve(fail('went wrong', 'do this')) });
    await checkup.check({ id: 'c', title: 'nothing', run: () => Promise.resolve({ ok: true, skipped: true, detail: 'not checked' }) });
    expect(renderTable(checkup.report('cloud'))).toBe(
      [
        '   CHECK           FOUND        TO DO',
        '✔  short           ok',
        '✗  a longer title  went wrong   do this',
        '–  nothing         not checked',
        '',
        'cloud: 1 of 3 checks failed',
        '',
      ].join('\n'),
    );
  });
});

describe("the doctor's routes: the channels' proxy rules (src/channels/network)", () => {
  const sb = (text: string) => parseConnectionString(text);
  const AZURE = 'Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v';
  const RELAY = 'Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v';
  const env = { HTTPS_PROXY: 'http://user:p%40ss@proxy.corp:3128', NO_PROXY: '.internal.corp' };

  it('send Service Bus over WebSockets and the relay through HTTPS_PROXY, never AMQP over TCP', () => {
    const proxies = proxySettingsFrom(undefined, env);
    expect(serviceBusEndpoint(sb(AZURE), 'websockets', undefined, proxies).via?.display).toBe('http://user:***@proxy.corp:3128');
    expect(serviceBusEndpoint(sb(AZURE), 'websockets', undefined, proxies)).toMatchObject({ port: 443, tls: true });
    // HTTPS_PROXY speaks for HTTPS traffic: AMQP over TCP goes directly, as the Service Bus channel does.
    expect(serviceBusEndpoint(sb(AZURE), 'amqp', undefined, proxies)).toMatchObject({ port: 5671, via: undefined });
    expect(relayEndpoint(RELAY, proxies).via?.url.host).toBe('proxy.corp:3128');
  });

  it('skip the hosts NO_PROXY lists, and use none with proxy: false', () => {
    const internal = 'Endpoint=sb://sb.internal.corp/;SharedAccessKeyName=k;SharedAccessKey=v';
    expect(serviceBusEndpoint(sb(internal), 'websockets', undefined, proxySettingsFrom(undefined, env)).via).toBeUndefined();
    expect(relayEndpoint(internal, proxySettingsFrom(undefined, env)).via).toBeUndefined();
    const none = proxySettingsFrom(false, env);
    expect(serviceBusEndpoint(sb(AZURE), 'websockets', undefined, none).via).toBeUndefined();
    expect(relayEndpoint(RELAY, none).via).toBeUndefined();
  });

  it('route to the endpoint address, not the namespace host', () => {
    const proxies = proxySettingsFrom({ url: 'http://gw:8080', noProxy: ['contoso.servicebus.windows.net'] }, {});
    const endpoint = serviceBusEndpoint(sb(AZURE), 'websockets', 'https://sb-gateway.example.com:8443', proxies);
    expect(endpoint).toMatchObject({ host: 'sb-gateway.example.com', port: 8443, tls: true });
    expect(endpoint.via?.url.host).toBe('gw:8080');
  });
});
