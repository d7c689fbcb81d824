export { startRelayEmulator } from './startRelayEmulator.js';
export type { AcceptConnectionOptions, DropListenersOptions, ForeignUpgrade, RelayEmulator } from './startRelayEmulator.js';
export type {
  HybridConnectionDefinition,
  RelayEmulatorOptions,
  RelayLogEntry,
  RelayLogLevel,
  RelayRight,
  SharedAccessPolicy,
} from './relayEmulatorOptions.js';
export { DEVELOPMENT_KEY, DEVELOPMENT_KEY_NAME } from './relayEmulatorOptions.js';
export type { RelayCounters } from './relayContext.js';
export type { ListenerChannelInfo } from './listenerChannel.js';
