/**
 * Nagle's algorithm off on the SDK's own AMQP sockets (transport `amqp`: plain TCP to an emulator, TLS to Azure's
 * port 5671). WebSockets need nothing here: the ws client turns it off on its socket itself.
 *
 * Why: with Nagle on, a small frame written while an earlier small frame is not yet acknowledged waits in the kernel
 * until that acknowledgement comes, and the broker delays acknowledging a frame it has nothing to answer (a link
 * credit, say) by up to 40 ms on Linux. The consumer frees a handler's place as its completion starts, so the SDK
 * writes a credit and a disposition back to back, and the next send on that connection waited ~43 ms every time
 * (measured with the raw SDK against the emulator: 43 ms per send instead of 1 ms).
 *
 * How: core-amqp hands rhea no socket option, and rhea turns Nagle off only when a receiver is attached on the
 * connection itself (the SDK attaches through sessions). So every rhea connection's socket gets `setNoDelay(true)`
 * as rhea takes it: a wrapper around rhea's `Connection.prototype.init`, installed once per process. rhea is pinned by
 * the lock file; a test (`test/channels/servicebus/amqpSockets.int.test.ts`) fails if a new rhea stops calling it.
 */
import { createRequire } from 'node:module';

interface RheaConnectionPrototype {
  init: (this: unknown, socket: unknown) => unknown;
}

const WRAPPED = Symbol.for('storelink.amqpSockets.noDelay');
const require = createRequire(import.meta.url);

/**
 * Installs the wrapper (idempotent). Returns false if rhea's connection no longer has the expected shape: the SDK then
 * works as before, only slower on `amqp`.
 */
export function disableNagleOnAmqpSockets(): boolean {
  let prototype: RheaConnectionPrototype & { [WRAPPED]?: true };
  try {
    prototype = (require('rhea/lib/connection.js') as { prototype: RheaConnectionPrototype }).prototype;
  } catch {
    return false;
  }
  if (prototype[WRAPPED] === true) return true;
  const init = prototype.init;
  if (typeof init !== 'function') return false;
  prototype.init = function initWithoutNagle(this: unknown, socket: unknown) {
    const tcp = socket as { setNoDelay?: unknown } | null;
    if (typeof tcp?.setNoDelay === 'function') (tcp as { setNoDelay(noDelay: boolean): void }).setNoDelay(true);
    return init.call(this, socket);
  };
  prototype[WRAPPED] = true;
  return true;
}
