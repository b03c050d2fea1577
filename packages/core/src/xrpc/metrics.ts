import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export interface MetricsOptions {
  /** Path of the Prometheus endpoint (default `/metrics`). */
  path?: string
  /** A registry to use (default: a new one per server, so several servers in one process do not clash). */
  registry?: Registry
  /** Node process metrics (default true). */
  defaultMetrics?: boolean
  /** Prefix for metric names (default none). */
  prefix?: string
}

export interface HttpMetrics {
  registry: Registry
  requests: Counter<'nsid' | 'method' | 'status'>
  duration: Histogram<'nsid' | 'status'>
  path: string
  /**
   * Run before {@link requests} is read (a scrape, `get()`): they add the counts a hot path kept as plain
   * numbers instead of a prom-client call per request (each hashes its labels).
   */
  flushers: (() => void)[]
}

/**
 * `http_requests_total{nsid,method,status}` and `http_request_duration_seconds{nsid,status}`; `nsid` is
 * the XRPC method (or `_unknown` for names no lexicon defines, so callers cannot grow the label set), or
 * the route pattern for other paths.
 */
export function createHttpMetrics(opts: MetricsOptions = {}): HttpMetrics {
  const registry = opts.registry ?? new Registry()
  const prefix = opts.prefix ?? ''
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix })
  const flushers: (() => void)[] = []
  const requests = new Counter({
    name: `${prefix}http_requests_total`,
    help: 'HTTP requests by XRPC method (or route), HTTP method and status',
    labelNames: ['nsid', 'method', 'status'] as const,
    registers: [registry],
    collect() {
      for (const flush of flushers) flush()
    },
  })
  const duration = new Histogram({
    name: `${prefix}http_request_duration_seconds`,
    help: 'HTTP request duration by XRPC method (or route) and status',
    labelNames: ['nsid', 'status'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  })
  return { registry, requests, duration, path: opts.path ?? '/metrics', flushers }
}
