import { describe, expect, it } from 'vitest';
import { Checkup, fail, pass, renderTable } from '../../src/doctor/checkup.js';
import { proxyFrom, usesProxy } from '../../src/doctor/network.js';

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

describe('proxy settings', () => {
  it('come from the configuration, else HTTPS_PROXY / NO_PROXY; false means none', () => {
    const env = { HTTPS_PROXY: 'http://user:p%40ss@proxy.corp:3128', NO_PROXY: 'localhost,.internal.corp,10.0.0.1:8443' };
    const fromEnv = proxyFrom({}, env)!;
    expect([fromEnv.url.host, fromEnv.username, fromEnv.password, fromEnv.noProxy]).toEqual(['proxy.corp:3128', 'user', 'p@ss', ['localhost', '.internal.corp', '10.0.0.1:8443']]);
    expect(proxyFrom({ proxy: false }, env)).toBeUndefined();
    expect(proxyFrom({}, {})).toBeUndefined();
    const configured = proxyFrom({ proxy: { url: 'https://gw:443', username: 'a', password: 'b', noProxy: [] } }, env)!;
    expect([configured.url.host, configured.username, configured.noProxy]).toEqual(['gw', 'a', []]);
    expect(() => proxyFrom({ proxy: { url: 'socks5://gw:1080' } }, {})).toThrow(/http:\/\/ or https:\/\//);
  });

  it('skip the hosts NO_PROXY lists', () => {
    const proxy = proxyFrom({}, { HTTPS_PROXY: 'http://proxy:3128', NO_PROXY: 'localhost,.internal.corp,10.0.0.1:8443' });
    expect(usesProxy(proxy, 'contoso.servicebus.windows.net', 443)).toBe(true);
    expect(usesProxy(proxy, 'localhost', 443)).toBe(false);
    expect(usesProxy(proxy, 'sb.internal.corp', 443)).toBe(false);
    expect(usesProxy(proxy, 'internal.corp', 443)).toBe(false);
    expect(usesProxy(proxy, 'notinternal.corp', 443)).toBe(true);
    expect(usesProxy(proxy, '10.0.0.1', 8443)).toBe(false);
    expect(usesProxy(proxy, '10.0.0.1', 443)).toBe(true);
    expect(usesProxy(proxyFrom({}, { HTTPS_PROXY: 'http://proxy:3128', NO_PROXY: '*' }), 'anything', 443)).toBe(false);
    expect(usesProxy(undefined, 'anything', 443)).toBe(false);
  });
});
