import { describe, expect, it } from 'vitest';
import { HybridConnectionState } from '../../../src/emulator/relay/hybridConnectionState.js';
import type { ListenerChannel } from '../../../src/emulator/relay/listenerChannel.js';
import { resolveHybridConnection } from '../../../src/emulator/relay/relayEmulatorOptions.js';

function channel(name: string, isOpen = true): ListenerChannel {
  return { id: name, isOpen } as unknown as ListenerChannel;
}

describe('HybridConnectionState', () => {
  it('picks open listeners round-robin and skips closed ones', () => {
    const state = new HybridConnectionState(resolveHybridConnection({ name: 'hc1' }));
    const [a, b, c] = [channel('a'), channel('b', false), channel('c')];
    state.add(a);
    state.add(b);
    state.add(c);
    expect([1, 2, 3, 4].map(() => state.pick()?.id)).toEqual(['a', 'c', 'a', 'c']);
    expect(state.hasListener()).toBe(true);
  });

  it('keeps the rotation fair when a listener leaves', () => {
    const state = new HybridConnectionState(resolveHybridConnection({ name: 'hc1' }));
    const [a, b, c] = [channel('a'), channel('b'), channel('c')];
    state.add(a);
    state.add(b);
    state.add(c);
    expect(state.pick()?.id).toBe('a');
    expect(state.pick()?.id).toBe('b');
    expect(state.remove(a)).toBe(true);
    expect(state.remove(a)).toBe(false);
    expect([1, 2, 3].map(() => state.pick()?.id)).toEqual(['c', 'b', 'c']);
  });

  it('has no listener when none is open, and checking does not move the cursor', () => {
    const state = new HybridConnectionState(resolveHybridConnection({ name: 'hc1' }));
    expect(state.pick()).toBeUndefined();
    state.add(channel('x', false));
    expect(state.hasListener()).toBe(false);
    expect(state.pick()).toBeUndefined();
    state.add(channel('y'));
    state.add(channel('z'));
    expect(state.hasListener()).toBe(true);
    expect(state.pick()?.id).toBe('y');
  });

  it('refuses listeners until the refusal ends', () => {
    const state = new HybridConnectionState(resolveHybridConnection({ name: 'hc1' }));
    expect(state.isRefusingListeners(1000)).toBe(false);
    state.refusedUntilMs = 2000;
    expect(state.isRefusingListeners(1999)).toBe(true);
    expect(state.isRefusingListeners(2000)).toBe(false);
  });
});
