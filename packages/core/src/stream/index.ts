/**
 * Event streams (XRPC subscriptions over WebSocket).
 *
 * Producer side (PDS sequencer, relay):
 *   const log = new SqliteEventLog(path)                       // durable, seq = last + 1
 *   const { server } = mountEventStream(app, 'com.atproto.sync.subscribeRepos', { log })
 *   const evt = log.append('identity', did, (seq) => encodeMessageFrame('#identity', { seq, did, time }))
 *   server.publish(evt.seq, evt.frame)                          // same bytes to every consumer
 *
 * Consumer side (relay, AppView):
 *   new SubscriptionClient({ url, getCursor, onEvent }).start()
 */
export {
  OP_MESSAGE,
  OP_ERROR,
  FrameError,
  encodeMessageFrame,
  encodeErrorFrame,
  encodeInfoFrame,
  decodeFrame,
  messageHeaderBytes,
  type MessageFrame,
  type ErrorFrame,
  type UnknownFrame,
  type DecodedFrame,
} from './frames.js'
export {
  CommitFrame,
  OutboundCommit,
  bodySeq,
  checkFrameBody,
  indexCommitFrame,
  isCidPayload,
  matchMessageHeader,
} from './commit-frame.js'
export { WalGroupSync } from './group-sync.js'
export {
  WalCheckpointer,
  WalCheckpointSchedule,
  WriteHold,
  walCheckpointSequence,
  type WalCheckpointResult,
  type WalCheckpointScheduleOptions,
} from './wal-checkpoint.js'
export {
  MemoryEventLog,
  SqliteEventLog,
  type EventLog,
  type LoggedEvent,
  type PruneOptions,
  type PruneResult,
  type SqliteEventLogOptions,
  type SqliteEventRow,
  type AppendItem,
  type AssignedEvent,
} from './event-log.js'
export {
  SubscriptionServer,
  type SubscriptionServerOptions,
  type AttachOptions,
  type ConsumerInfo,
} from './server.js'
export {
  mountSubscription,
  mountEventStream,
  parseSubscriptionParams,
  rejectUpgrade,
  SubscriptionHttpError,
  type SubscriptionParams,
  type MountOptions,
  type MountedSubscription,
  type OnConnection,
} from './mount.js'
export {
  SubscriptionClient,
  StreamErrorFrame,
  StreamHttpError,
  StreamHandlerError,
  type StreamEvent,
  type StreamInfo,
  type SubscriptionClientOptions,
} from './client.js'
