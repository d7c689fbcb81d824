/** `storelink/emulator`: the local stand-ins for Azure Service Bus and Azure Relay Hybrid Connections. */
export { startEmulators, tlsConnectionString } from './startEmulators.js';
export type { Emulators, EmulatorsOptions, EmulatorsTls } from './startEmulators.js';
export { ensureDevelopmentCertificates } from './tls/index.js';
export type { DevelopmentCertificates, DevelopmentCertificatesOptions } from './tls/index.js';
export { parseEmulatorsConfig } from './emulatorsConfig.js';
export type { EmulatorsConfig } from './emulatorsConfig.js';
export { startRelayEmulator, DEVELOPMENT_KEY, DEVELOPMENT_KEY_NAME } from './relay/index.js';
export type { HybridConnectionDefinition, RelayEmulator, RelayEmulatorOptions } from './relay/index.js';
export { startServiceBusEmulator, parseEmulatorConfig } from './servicebus/index.js';
export type { NamespaceOptions, ServiceBusEmulator, ServiceBusEmulatorOptions, SharedAccessPolicy } from './servicebus/index.js';
