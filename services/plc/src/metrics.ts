import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/** Prometheus metrics of one directory instance (its own registry, so several can share a process). */
export class PlcMetrics {
  readonly registry = new Registry()
  readonly httpRequests = new Counter({
    name: 'plc_http_requests_total',
    help: 'HTTP requests by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  })
  readonly httpDuration = new Histogram({
    name: 'plc_http_request_duration_seconds',
    help: 'HTTP request duration by route',
    labelNames: ['method', 'route'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  })
  readonly operations = new Counter({
    name: 'plc_operations_total',
    help: 'Submitted operations by result (accepted, rejected) and type or rejection code',
    labelNames: ['result', 'kind'] as const,
    registers: [this.registry],
  })
  readonly nullified = new Counter({
    name: 'plc_nullified_operations_total',
    help: 'Operations nullified by recovery forks',
    registers: [this.registry],
  })

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'plc_' })
  }
}
