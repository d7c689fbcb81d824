// The part of hyco-https 1.4.5 storelink and its tests use. The package ships no types.
declare module 'hyco-https' {
  import type { EventEmitter } from 'node:events';
  import type { IncomingMessage, ServerResponse } from 'node:http';

  namespace hycoHttps {
    /** The ws 6 client hyco-https keeps as its control channel. */
    interface HycoControlChannel extends EventEmitter {
      readonly readyState: number;
      ping(data?: unknown, mask?: boolean, callback?: (error?: Error) => void): void;
      close(code?: number, reason?: string): void;
      terminate(): void;
    }

    interface HycoServer extends EventEmitter {
      /** The current control channel; replaced on every (re)connection. */
      readonly controlChannel: HycoControlChannel | undefined;
      /** Connects the control channel; the constructor does not. */
      listen(): void;
      close(callback?: (error: Error | null) => void): void;
    }

    interface HycoServerOptions {
      /** The listen URI: `wss://ns:443/$hc/<name>?sb-hc-action=listen` (`ws://` for the emulator). */
      server: string;
      /** A function is called on every (re)connect and every renewal; a string can never be renewed. */
      token: string | (() => string);
      keepAliveTimeout?: unknown;
    }
  }

  interface HycoHttps {
    createRelayedServer(
      options: hycoHttps.HycoServerOptions,
      requestListener?: (request: IncomingMessage, response: ServerResponse) => void,
    ): hycoHttps.HycoServer;
    createRelayToken(uri: string, keyName: string, key: string, expirationSeconds?: number): string;
    appendRelayToken(uri: string, keyName: string, key: string, expirationSeconds?: number): string;
  }

  const hycoHttps: HycoHttps;
  export = hycoHttps;
}
