/**
 * The http.Agent a WebSocket (the Service Bus SDK's ws, hyco-https' ws) opens its connection through when a proxy
 * applies: a CONNECT tunnel, then TLS to the service inside it for wss.
 */
import type { Agent } from 'node:http';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { proxyAuthorization, type ResolvedProxy } from './proxy.js';

/**
 * An agent tunnelling through `proxy`. `ca` (from trustedCertificates) is trusted for an https:// proxy's own
 * certificate; the service's certificate is checked with the `ca` of the socket's own options.
 */
export function webSocketProxyAgent(proxy: ResolvedProxy, ca: readonly string[] | undefined): Agent {
  // Credentials go in the CONNECT header, not the URL: the agent percent-decodes a URL's, which mangles a bare `%`.
  const authorization = proxyAuthorization(proxy);
  return new HttpsProxyAgent(proxy.url, {
    ...(authorization === undefined ? {} : { headers: { 'Proxy-Authorization': authorization } }),
    ...(ca === undefined ? {} : { ca: [...ca] }),
  });
}
