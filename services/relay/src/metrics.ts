/**
 * Relay metrics, registered next to the HTTP metrics of the XRPC server (served at /metrics).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export interface MetricsSources {
  hostsByStatus: () => Map<string, number>
  consumers: () => number
  eventLog: () => { count: number; bytes: number; lastSeq: number }
}

export class RelayMetrics {
  readonly received: Counter<'type'>
  readonly dropped: Counter<'reason'>
  readonly emitted: Counter<'type'>
  readonly upstreamErrors: Counter<'kind'>
  readonly resyncs: Counter<'result'>
  readonly verifyDuration: Histogram<'type'>
  readonly consumerDisconnects: Counter<'reason'>

  constructor(registry: Registry, sources: MetricsSources) {
    const registers = [registry]
    this.received = new Counter({
      name: 'relay_events_received_total',
      help: 'Upstream events received, by message type',
      labelNames: ['type'] as const,
      registers,
    })
    this.dropped = new Counter({
      name: 'relay_events_dropped_total',
      help: 'Upstream events dropped (never forwarded), by reason',
      labelNames: ['reason'] as const,
      registers,
    })
    this.emitted = new Counter({
      name: 'relay_events_emitted_total',
      help: 'Events written to the outbound stream, by message type',
      labelNames: ['type'] as const,
      registers,
    })
    this.upstreamErrors = new Counter({
      name: 'relay_upstream_errors_total',
      help: 'Upstream subscription problems (connection failures, error frames, refused upgrades)',
      labelNames: ['kind'] as const,
      registers,
    })
    this.resyncs = new Counter({
      name: 'relay_account_resyncs_total',
      help: 'Resynchronizations of desynchronized accounts, by result',
      labelNames: ['result'] as const,
      registers,
    })
    this.consumerDisconnects = new Counter({
      name: 'relay_consumer_disconnects_total',
      help: 'Outbound subscribers that went away, by reason',
      labelNames: ['reason'] as const,
      registers,
    })
    this.verifyDuration = new Histogram({
      name: 'relay_event_processing_seconds',
      help: 'Time to verify and store one upstream event, by message type',
      labelNames: ['type'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
      registers,
    })
    new Gauge({
      name: 'relay_hosts',
      help: 'Hosts by status',
      labelNames: ['status'] as const,
      registers,
      collect() {
        this.reset()
        for (const [status, n] of sources.hostsByStatus()) this.set({ status }, n)
      },
    })
    new Gauge({
      name: 'relay_consumers',
      help: 'Connected subscribeRepos consumers',
      registers,
      collect() {
        this.set(sources.consumers())
      },
    })
    new Gauge({
      name: 'relay_event_log_events',
      help: 'Events held in the replay window',
      registers,
      collect() {
        this.set(sources.eventLog().count)
      },
    })
    new Gauge({
      name: 'relay_event_log_bytes',
      help: 'Frame bytes held in the replay window',
      registers,
      collect() {
        this.set(sources.eventLog().bytes)
      },
    })
    new Gauge({
      name: 'relay_last_seq',
      help: 'Last seq published on the outbound stream (durable)',
      registers,
      collect() {
        this.set(sources.eventLog().lastSeq)
      },
    })
  }
}
