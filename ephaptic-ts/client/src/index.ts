export { connect, DEFAULT_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS, SESSION_ENDED_CLOSE_CODE } from "./client.js";
export { EphapticError, isEphapticError } from "./errors.js";
export type { BuiltinErrors, ClientErrorCode, DisconnectedData, ErrorData, ValidationIssue } from "./errors.js";
export { EphapticStream } from "./stream.js";
export { resolveUrl, DEFAULT_PATH } from "./url.js";
export type { LocationLike } from "./url.js";
export { DEFAULT_BACKOFF } from "./backoff.js";
export { Presence } from "./presence.js";
export type { PresenceConn, PresenceHost, PresenceMember, PresenceOptions } from "./presence.js";
export type { BackoffOptions } from "./backoff.js";
export type {
  AbortSignalLike,
  CallOptions,
  CallView,
  Client,
  ClientBase,
  ConnectOptions,
  ConnectionState,
  ErrorCode,
  ErrorContext,
  EventName,
  KeyPrefix,
  Logger,
  MethodName,
  MutationOptions,
  MutationsMap,
  QueryClientLike,
  QueryKey,
  QueryKeyOf,
  QueryOptions,
  Resync,
  ResyncReason,
  SchemaMismatch,
  Session,
  SessionEnded,
  SessionLimits,
  StateChange,
  StreamOutcome,
  Untyped,
  UntypedCalls,
  UntypedMutations,
  UntypedQueries,
  WebSocketConstructorLike,
  WebSocketLike,
} from "./types.js";
