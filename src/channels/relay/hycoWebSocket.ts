/**
 * Loads hyco-https so that the WebSockets it opens (its control channel, and the rendezvous sockets of large
 * requests) can go through a proxy and trust an extra CA.
 *
 * Why this way: hyco-https 1.4.5 builds every socket itself with `new WebSocket(url, protocols, options)` from its own
 * copy of ws 6, and the options it passes are fixed (the token header, perMessageDeflate): no agent, no `ca`, no hook.
 * ws 6 itself honours an `agent` and TLS options when given them, and reads no global agent. So the one seam is the
 * `ws` module hyco-https receives from `require('ws')`: while hyco-https loads, Node's documented `require.cache` holds,
 * in place of that ws, a subclass whose constructor adds the agent and CA of the listener that caused the socket;
 * once hyco-https has bound it, the cache entry is put back, so nothing else sees the subclass. No file under
 * node_modules changes.
 *
 * Which listener caused a socket is carried by an AsyncLocalStorage: the listener calls `listen()` inside
 * `withSocketSettings`, and everything hyco-https does afterwards for that server (its own reconnect timers, the
 * control channel's messages that open rendezvous sockets) runs in that async context. Sockets opened outside any
 * such context (hyco-https used directly, or a listener without proxy or CA) get exactly hyco-https' own options.
 */
import type { Agent } from 'node:http';
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import tls, { type SecureContext } from 'node:tls';
import type hycoHttps from 'hyco-https';

/** What the sockets of one listener need: an agent for a URL (undefined: connect directly), and the CA list. */
export interface HycoSocketSettings {
  agentFor(url: string): Agent | undefined;
  ca: readonly string[] | undefined;
}

type HycoHttps = typeof hycoHttps;
type WebSocketClass = new (address: unknown, protocols?: unknown, options?: unknown) => object;

const context = new AsyncLocalStorage<HycoSocketSettings>();
const require = createRequire(import.meta.url);

let loaded: { hyco: HycoHttps; routable: boolean } | undefined;

/**
 * One secure context per trust list in the process: a socket given `ca` parses the whole list (Node's roots and the
 * extra CA) again, tens of milliseconds of CPU for each rendezvous of a large request, and for each listener of a
 * process running many store agents. By listener settings first (no hashing per socket), then by the list's content.
 */
const secureContexts = new WeakMap<HycoSocketSettings, SecureContext>();
const secureContextsByList = new Map<string, SecureContext>();

function secureContextOf(settings: HycoSocketSettings, ca: readonly string[]): SecureContext {
  let secureContext = secureContexts.get(settings);
  if (secureContext === undefined) {
    const list = createHash('sha256').update(ca.join('\n')).digest('hex');
    secureContext = secureContextsByList.get(list);
    if (secureContext === undefined) {
      secureContext = tls.createSecureContext({ ca: [...ca] });
      secureContextsByList.set(list, secureContext);
    }
    secureContexts.set(settings, secureContext);
  }
  return secureContext;
}

/** The options ws 6 receives, with this context's agent and CA added. */
function routedOptions(settings: HycoSocketSettings, address: unknown, options: unknown): Record<string, unknown> {
  const base = typeof options === 'object' && options !== null ? { ...(options as Record<string, unknown>) } : {};
  const agent = settings.agentFor(String(address));
  if (agent !== undefined) base.agent = agent;
  if (settings.ca !== undefined) base.secureContext = secureContextOf(settings, settings.ca);
  return base;
}

function subclassOf(RealWebSocket: WebSocketClass): WebSocketClass {
  return class RoutedWebSocket extends RealWebSocket {
    constructor(address: unknown, protocols?: unknown, options?: unknown) {
      const settings = context.getStore();
      if (settings === undefined) {
        super(address, protocols, options);
        return;
      }
      // ws 6 reads an object in the protocols place as the options (hyco-https calls it that way for rendezvous).
      const protocolsAreOptions = options === undefined && typeof protocols === 'object' && protocols !== null && !Array.isArray(protocols);
      super(address, protocolsAreOptions ? undefined : protocols, routedOptions(settings, address, protocolsAreOptions ? protocols : options));
    }
  };
}

/**
 * hyco-https, loaded once. `routable` is false when something loaded it before this module could (a test importing
 * it directly first): its sockets then cannot be routed, which `withSocketSettings` reports.
 */
export function loadHycoHttps(): { hyco: HycoHttps; routable: boolean } {
  if (loaded !== undefined) return loaded;
  const hycoEntry = require.resolve('hyco-https');
  const fromHyco = createRequire(hycoEntry);
  const wsPath = fromHyco.resolve('ws');
  const serverPath = fromHyco.resolve('./lib/HybridConnectionHttpsServer.js');
  if (require.cache[serverPath] !== undefined) {
    loaded = { hyco: require(hycoEntry) as HycoHttps, routable: false };
    return loaded;
  }
  const RealWebSocket = fromHyco('ws') as WebSocketClass;
  const cached = require.cache[wsPath];
  if (cached === undefined) throw new Error(`hyco-https's ws (${wsPath}) did not load into require.cache`);
  cached.exports = subclassOf(RealWebSocket);
  try {
    loaded = { hyco: require(hycoEntry) as HycoHttps, routable: true };
  } finally {
    cached.exports = RealWebSocket;
  }
  return loaded;
}

/** Runs `work` (a hyco-https server's `listen()`) so that every socket it leads to gets `settings`. */
export function withSocketSettings<T>(settings: HycoSocketSettings | undefined, work: () => T): T {
  // Outside any listener's context, or leaving one (a server opened from another listener's callbacks): no routing.
  if (settings === undefined) return context.getStore() === undefined ? work() : context.exit(work);
  if (!loadHycoHttps().routable) {
    throw new Error(
      'hyco-https was loaded before storelink could route its WebSockets, so a proxy or tls.caFile cannot apply to the relay listener: ' +
        "let storelink's relay listener be the first to load hyco-https in this process",
    );
  }
  return context.run(settings, work);
}
