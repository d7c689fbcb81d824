export { startServiceBusEmulator, type ServiceBusEmulator } from './startServiceBusEmulator.js';
export { WEBSOCKET_PATH, WEBSOCKET_PROTOCOL } from './amqpServer.js';
export type {
  AccessRight,
  AuthorizationRule,
  EntityProperties,
  NamespaceOptions,
  QueueOptions,
  RuleOptions,
  ServiceBusEmulatorOptions,
  SharedAccessPolicy,
  SubscriptionOptions,
  TopicOptions,
} from './options.js';
export type { CorrelationFilter } from './filters.js';
export { MAX_AUTHORIZATION_RULES_PER_ENTITY } from './options.js';
export { parseEmulatorConfig, parseIsoDuration } from './emulatorConfig.js';
export { isManagementRequest, MAX_MANAGEMENT_BODY_BYTES, MAX_MANAGEMENT_XML_DEPTH } from './atomManagement.js';
