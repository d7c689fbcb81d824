/**
 * The live state of one hybrid connection: its connected control channels (requests are spread over them round-robin,
 * without affinity, as Azure does) and the faults tests have injected into it.
 */
import type { ListenerChannel } from './listenerChannel.js';
import type { ResolvedHybridConnection } from './relayEmulatorOptions.js';

export class HybridConnectionState {
  readonly listeners: ListenerChannel[] = [];
  /** Channels forgotten by `silenceListeners`: still connected, never used again, cut by `dropListeners` or close. */
  readonly silenced = new Set<ListenerChannel>();
  private cursor = 0;
  /** Listen attempts are refused until this time (Infinity: until `acceptListeners`). */
  refusedUntilMs = 0;
  /** Added before every listener response is forwarded to its sender. */
  responseDelayInMs = 0;
  /** Consecutive refused listen attempts, to keep repeated failures visible without flooding the log. */
  consecutiveRejections = 0;

  constructor(readonly definition: ResolvedHybridConnection) {}

  get name(): string {
    return this.definition.name;
  }

  add(channel: ListenerChannel): void {
    this.listeners.push(channel);
  }

  remove(channel: ListenerChannel): boolean {
    const index = this.listeners.indexOf(channel);
    if (index < 0) return false;
    this.listeners.splice(index, 1);
    if (this.cursor > index) this.cursor -= 1;
    return true;
  }

  /** Whether a listener is connected, without moving the round-robin cursor. */
  hasListener(): boolean {
    return this.listeners.some((channel) => channel.isOpen);
  }

  /** The next open listener, round-robin; undefined when none is connected. */
  pick(): ListenerChannel | undefined {
    for (let tries = 0; tries < this.listeners.length; tries += 1) {
      if (this.cursor >= this.listeners.length) this.cursor = 0;
      const channel = this.listeners[this.cursor]!;
      this.cursor += 1;
      if (channel.isOpen) return channel;
    }
    return undefined;
  }

  isRefusingListeners(nowInMs: number): boolean {
    return nowInMs < this.refusedUntilMs;
  }
}
