/**
 * The options of a dispatcher for one bi-directional store on the emulators, signatures on: what the relay tests of
 * the cloud share; each adds what it tests (a handoff, say).
 */
import type { DispatcherOptions } from '../../src/cloud/dispatcher.js';
import type { Policy } from '../../src/core/policy.js';
import type { Emulators } from '../../src/emulator/startEmulators.js';
import { dispatcherSigningOptions, storePublicKeys } from './signingKeys.js';

export function oneStoreDispatcherOptions(
  azure: Emulators,
  options: { storeId: string; policy: Policy; retry: NonNullable<DispatcherOptions['serviceBus']['retry']> },
): DispatcherOptions {
  return {
    serviceBus: { connectionString: azure.serviceBusConnectionString(), retry: options.retry },
    relay: { connectionString: azure.relayConnectionString() },
    policy: options.policy,
    stores: [{ storeId: options.storeId, bidirectional: true, ...storePublicKeys(options.storeId) }],
    ...dispatcherSigningOptions(),
  };
}
