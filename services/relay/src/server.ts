/**
 * RelayServer: the relay as one object. `create(config)` opens its stores and builds the HTTP app;
 * `start()` listens and subscribes to the hosts; `close()` stops cleanly (cursors saved, consumers told).
 */
import { mountSubscription } from '@stratos/core/stream'
import { registerApi } from './api/index.js'
import type { RelayConfig } from './config.js'
import { RelayContext, type RelayContextOptions } from './context.js'

export class RelayServer {
  private started = false
  private closing: Promise<void> | null = null

  private constructor(readonly ctx: RelayContext) {}

  static async create(config: RelayConfig, opts: RelayContextOptions = {}): Promise<RelayServer> {
    const ctx = await RelayContext.create(config, opts)
    registerApi(ctx)
    mountSubscription(ctx.xrpc.app, 'com.atproto.sync.subscribeRepos', (ws, req, params) => {
      ctx.outbox.server.attach(ws, { cursor: params.cursor, remoteAddress: req.socket.remoteAddress })
    }, { maxPerIp: config.subscribeMaxPerIp })
    ctx.jetstream?.mount(ctx.xrpc.app)
    return new RelayServer(ctx)
  }

  get config(): RelayConfig {
    return this.ctx.config
  }

  /** `http://host:port` once started. */
  get url(): string {
    return this.ctx.xrpc.url
  }

  /** Listens, starts retention and subscribes to the known (and configured) hosts. Resolves to the URL. */
  async start(): Promise<string> {
    if (this.started) return this.url
    this.started = true
    // the verification workers are up before anything arrives (a worker that cannot start fails the start here,
    // instead of the first events waiting on it)
    await this.ctx.verifier.ready()
    const url = await this.ctx.xrpc.listen({ port: this.config.port, host: this.config.host })
    this.ctx.outbox.prune()
    this.ctx.outbox.startRetention(this.config.retentionIntervalMs, (err) =>
      this.ctx.log.error({ err }, 'event log retention failed'),
    )
    this.ctx.slurper.start()
    await this.ctx.hostManager.addConfiguredHosts(this.config.initialHosts)
    return url
  }

  /** Stops subscriptions (saving cursors), closes consumers and the HTTP server, then the stores. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.ctx.collections.close()
      await this.ctx.slurper.close()
      this.ctx.jetstream?.close()
      await this.ctx.outbox.close()
      await this.ctx.xrpc.close()
      await this.ctx.closeStores()
    })()
    return this.closing
  }
}
