import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rootCertificates } from 'node:tls';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseProxyUrl, proxyAuthorization, proxyFor, proxySettingsFrom, redactProxyUrl } from '../../../src/channels/network/proxy.js';
import { trustedCertificates } from '../../../src/channels/network/tlsTrust.js';
import { issueTestCertificates, type TestCertificates } from '../../support/testCertificates.js';

describe('proxy settings: option first, else https_proxy/HTTPS_PROXY with no_proxy/NO_PROXY', () => {
  it('reads nothing when neither the option nor the environment names a proxy', () => {
    expect(proxySettingsFrom(undefined, {})).toMatchObject({ proxy: undefined, source: 'none' });
    expect(proxySettingsFrom(undefined, { HTTPS_PROXY: '  ' })).toMatchObject({ proxy: undefined, source: 'none' });
  });

  it('prefers the lower-case variables, reads a scheme-less value as http, and decodes URL credentials', () => {
    const settings = proxySettingsFrom(undefined, { https_proxy: 'us%40r:p%3Ass@proxy.corp:3128', HTTPS_PROXY: 'http://other:1', NO_PROXY: 'ignored.example', no_proxy: '.corp' });
    expect(settings.source).toBe('environment');
    expect(settings.proxy).toMatchObject({ username: 'us@r', password: 'p:ss', display: 'http://us%40r:***@proxy.corp:3128' });
    expect(settings.proxy?.url.href).toBe('http://proxy.corp:3128/');
    expect(proxyFor(settings, 'wss://sb.corp/')).toBeUndefined();
    expect(proxyFor(settings, 'wss://ignored.example/')).toBe(settings.proxy);
  });

  it('lets the option override the environment, and false turn the proxy off', () => {
    const env = { HTTPS_PROXY: 'http://env-proxy:3128' };
    expect(proxySettingsFrom({ url: 'http://option-proxy:8080', username: 'u', password: 'p' }, env).proxy).toMatchObject({ display: 'http://u:***@option-proxy:8080' });
    expect(proxySettingsFrom(false, env)).toMatchObject({ proxy: undefined, source: 'none' });
  });

  const settings = proxySettingsFrom({ url: 'http://proxy:3128', noProxy: ['internal.example', '.suffix.example', '*.star.example', 'port.example:8443', '10.1.2.3', '[::1]'] }, {});
  it.each([
    ['https://internal.example/', true],
    ['https://a.internal.example/', true],
    ['https://notinternal.example/', false],
    ['https://suffix.example/', false],
    ['https://a.suffix.example/', true],
    ['https://star.example/', false],
    ['https://b.star.example/', true],
    ['https://port.example:8443/', true],
    ['https://port.example/', false],
    ['wss://10.1.2.3/', true],
    ['wss://10.1.2.30/', false],
    ['ws://[::1]:9000/', true],
    ['https://INTERNAL.example./', true],
    ['https://contoso.servicebus.windows.net/', false],
  ])('NO_PROXY rules: %s goes direct: %s', (target, direct) => {
    expect(proxyFor(settings, target) === undefined).toBe(direct);
  });

  it('goes direct everywhere with *', () => {
    expect(proxyFor(proxySettingsFrom(undefined, { HTTPS_PROXY: 'http://p:1', NO_PROXY: '*' }), 'https://anything.example/')).toBeUndefined();
  });

  it.each([
    [{ url: 'socks5://proxy:1080' }, /must be an http:\/\/ or https:\/\/ proxy/],
    [{ url: 'http://proxy:3128/path' }, /the proxy's address only/],
    [{ url: 'http://u:secret@proxy:3128', username: 'v', password: 'other' }, /either in the URL or as username and password/],
    [{ url: 'http://proxy:3128', password: 'secret' }, /a proxy password needs a username/],
    [{ url: 'http://proxy:3128', noProxy: ['bad host'] }, /"bad host" is not a host/],
    [{ url: 'http://proxy:3128', noProxy: ['host:port'] }, /has a port that is not a number/],
    [{ url: 'http://u:secret@[bad' }, /is not a URL/],
  ])('refuses %j with a message that says what to change, never the password', (option, message) => {
    let thrown: unknown;
    try {
      proxySettingsFrom(option, {});
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(TypeError);
    expect((thrown as Error).message).toMatch(message);
    expect((thrown as Error).message).not.toContain('secret');
  });

  it('names the variable at fault', () => {
    expect(() => proxySettingsFrom(undefined, { HTTPS_PROXY: 'ftp://proxy:21' })).toThrow(/the HTTPS_PROXY environment variable must be an http/);
  });

  it('redacts passwords in proxy URLs and builds the Basic header from the decoded credentials', () => {
    expect(redactProxyUrl('http://user:hunter2@proxy:3128')).toBe('http://user:***@proxy:3128');
    expect(redactProxyUrl('http://proxy:3128')).toBe('http://proxy:3128');
    const proxy = parseProxyUrl('http://proxy:3128', 'proxy.url', { username: 'u', password: 'p%:w' });
    expect(proxyAuthorization(proxy)).toBe(`Basic ${Buffer.from('u:p%:w').toString('base64')}`);
    expect(proxyAuthorization(parseProxyUrl('http://proxy:3128', 'proxy.url'))).toBeUndefined();
  });
});

describe('extra CA (tls.caFile)', () => {
  let certificates: TestCertificates;
  beforeAll(async () => {
    certificates = await issueTestCertificates();
  });
  afterAll(() => certificates.remove());

  it("adds the CA to Node's roots and NODE_EXTRA_CA_CERTS' file, which an explicit ca would otherwise drop", async () => {
    const other = await issueTestCertificates();
    try {
      const list = trustedCertificates({ caFile: certificates.caFile }, { NODE_EXTRA_CA_CERTS: other.caFile });
      expect(list).toHaveLength(rootCertificates.length + 2);
      expect(list?.at(-1)?.trim()).toBe(certificates.caCert.trim());
      expect(list?.at(-2)?.trim()).toBe(other.caCert.trim());
    } finally {
      await other.remove();
    }
    expect(trustedCertificates(undefined, {})).toBeUndefined();
  });

  it('fails at once, naming the file, for a missing file or one with no certificate', async () => {
    expect(() => trustedCertificates({ caFile: path.join(certificates.dir, 'missing.pem') }, {})).toThrow(/tls\.caFile: cannot read .*missing\.pem/);
    const notPem = path.join(certificates.dir, 'not.pem');
    await writeFile(notPem, 'hello');
    expect(() => trustedCertificates({ caFile: notPem }, {})).toThrow(/holds no PEM certificate/);
    const broken = path.join(certificates.dir, 'broken.pem');
    await writeFile(broken, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    expect(() => trustedCertificates({ caFile: broken }, {})).toThrow(/certificate 1 of .* does not parse/);
    // A key is not a CA.
    expect(() => trustedCertificates({ caFile: certificates.keyFile }, {})).toThrow(/holds no PEM certificate/);
  });
});
