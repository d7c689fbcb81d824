// The few parts of hyco-https 1.4.5 the relay emulator's tests drive (the package ships no types).
declare module 'hyco-https' {
  import type { EventEmitter } from 'node:events';
  import type { IncomingMessage, ServerResponse } from 'node:http';

  interface RelayedServerOptions {
    /** The listen URI, e.g. `ws://127.0.0.1:9090/$hc/hc1?sb-hc-action=listen`. */
    server: string;
    /** A function is called on every (re)connect and every renewal; a string can never be renewed. */
    token: string | (() => string);
    keepAliveTimeout?: unknown;
  }

  interface RelayedServer extends EventEmitter {
    /** Connects the control channel; the constructor does not. */
    listen(): void;
    close(callback?: (error: Error | null) => void): void;
    /** The current control channel (a ws 6 client); only its readyState is read by the tests. */
    readonly controlChannel: { readonly readyState: number } | undefined;
  }

  interface HycoHttps {
    createRelayedServer(
      options: RelayedServerOptions,
      requestListener?: (req: IncomingMessage, res: ServerResponse) => void,
    ): RelayedServer;
    createRelayToken(uri: string, keyName: string, key: string, expirationSeconds?: number): string;
    appendRelayToken(uri: string, keyName: string, key: string, expirationSeconds?: number): string;
  }

  const hycoHttps: HycoHttps;
  export = hycoHttps;
}
