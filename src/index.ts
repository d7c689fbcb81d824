/** storelink's public library surface. Everything not exported here is internal and may change. */
export { STORELINK_ERROR_CODES, StorelinkError, isStorelinkError, withOperationId } from './core/errors.js';
export type { StorelinkErrorCode, StorelinkErrorOptions } from './core/errors.js';
export { MAX_JSON_DEPTH, findNonJson } from './core/json.js';
export type { JsonValue } from './core/json.js';
export {
  DEFAULT_MAX_PAYLOAD_BYTES,
  LATENCIES,
  MAX_OPERATION_BYTES,
  createOperation,
  createOperationSchema,
  isExpired,
  parseOperation,
} from './core/operation.js';
export type { CreateOperationInit, Latency, Operation, OperationSchemaOptions, ParseResult } from './core/operation.js';
export { defaultStoreEntityName, operationTypeSchema, storeIdSchema } from './core/names.js';
export {
  DEFAULT_LINK_POLICY,
  DEFAULT_OPERATION_POLICY,
  FALLBACKS,
  defaultPolicy,
  operationPolicyFor,
  parsePolicy,
} from './core/policy.js';
export type { Fallback, LinkPolicy, OperationPolicy, Policy, PolicyInput } from './core/policy.js';
export { LINK_EVENT_TYPES, LINK_TAGS, RELAY_ANNOUNCEMENTS, RELAY_FAILURE_REASONS } from './core/linkContract.js';
export type { LinkEvent, LinkInput, LinkTag, RelayAnnouncement, RelayFailureReason } from './core/linkContract.js';
export { route } from './core/route.js';
export type { RouteAction, RouteDecision, RouteOptions, RouteReason, TaggedSnapshot } from './core/route.js';
export { audienceCovers, createSasToken, parseSasToken, verifySasToken } from './core/sas.js';
export type { CreateSasTokenOptions, SasToken, VerifySasTokenOptions } from './core/sas.js';
export { KEY_ID_PATTERN, canonicalJson, generateSigningKeyPair, keyPairToPem } from './core/signing.js';
export type { MessageSignature, SigningKey, SigningKeyPair, TrustedKeys } from './core/signing.js';
export { checkChart } from './charts/checkChart.js';
export type { ChartCheckResult, ChartProblem, CheckChartOptions } from './charts/checkChart.js';
export { chartModelOf } from './charts/chartModel.js';
export type { ChartModel, ChartState, ChartTransition } from './charts/chartModel.js';
export { BUILT_IN_CHARTS, loadChart } from './charts/loadChart.js';
export { renderMermaid } from './charts/renderMermaid.js';
export { renderScxml } from './charts/renderScxml.js';
export { storeLinkMachine } from '../machines/storeLink.machine.js';
export type { StoreLinkContext } from '../machines/storeLink.machine.js';
export { createStoreAgent, DEFAULT_CLOUD_INBOX } from './store/storeAgent.js';
export type { StoreAgent, StoreAgentEvent, StoreAgentOptions, StoreAgentState, StoreEvent } from './store/storeAgent.js';
export { MAX_STORE_MESSAGE_BYTES } from './core/storeMessage.js';
export type { ReplyBody } from './core/storeMessage.js';
export { defineHandler, rejectOperation } from './store/executor.js';
export type { HandlerContext, OperationHandler, OperationHandlers } from './store/executor.js';
export type { CreateStore, StoreModule, StoreModuleContext } from './store/storeModule.js';
export { parseConnectionString, redactConnectionString } from './core/connectionString.js';
export { relayFailureReasonOf, RELAY_FAILURE_REASON_BY_CODE } from './core/linkContract.js';
export { createDispatcher } from './cloud/dispatcher.js';
export type {
  Delivery,
  DeliveryOutcome,
  Dispatcher,
  DispatcherOptions,
  InboxRejection,
  InboxRejectionReason,
  KnownStore,
  LinkView,
  OperationOutcome,
  OutcomeFailure,
  OutcomeKind,
  PublishOptions,
  PublishRequest,
  StoreEventMessage,
} from './cloud/dispatcher.js';
export { OUTCOME_KINDS } from './cloud/outcomes.js';
export { createCloudHttpApi } from './cloud/httpApi.js';
export type { CloudHttpApi, CloudHttpApiOptions } from './cloud/httpApi.js';
export { API_SCOPES, newApiKey } from './cloud/apiKeys.js';
export type { ApiKeyRecord, ApiScope, NewApiKey } from './cloud/apiKeys.js';
export { readApiKeyFile, writeApiKeyFile } from './cloud/apiKeyFile.js';
export { createDeadLetterQueue } from './channels/servicebus/deadLetterQueue.js';
