/**
 * LabelerServer: the labeler as one object. `create(config)` opens its database and builds the HTTP app
 * (XRPC methods, the subscribeLabels stream); `start()` listens; `close()` stops cleanly.
 */
import { mountEventStream, type SubscriptionServer } from '@stratos/core/stream'
import { registerApi } from './api/index.js'
import type { LabelerConfig } from './config.js'
import { LabelerContext, type LabelerContextOptions } from './context.js'

export class LabelerServer {
  private closing: Promise<void> | null = null
  private started = false

  private constructor(
    readonly ctx: LabelerContext,
    readonly stream: SubscriptionServer,
  ) {}

  static async create(config: LabelerConfig, opts: LabelerContextOptions = {}): Promise<LabelerServer> {
    const ctx = await LabelerContext.create(config, opts)
    registerApi(ctx)
    const { server } = mountEventStream(ctx.xrpc.app, 'com.atproto.label.subscribeLabels', {
      log: ctx.labels.eventLog(),
      onError: (err) => ctx.log.debug({ err: (err as Error)?.message }, 'subscriber socket error'),
    })
    ctx.labels.onEvent((evt) => server.publish(evt.seq, evt.frame))
    return new LabelerServer(ctx, server)
  }

  get config(): LabelerConfig {
    return this.ctx.config
  }

  /** `http://host:port` once started. */
  get url(): string {
    return this.ctx.xrpc.url
  }

  /** the did:key of the #atproto_label key */
  get labelKey(): string {
    return this.ctx.signingKey.did()
  }

  async start(): Promise<string> {
    if (this.started) return this.url
    this.started = true
    return this.ctx.xrpc.listen({ port: this.config.port, host: this.config.host })
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.ctx.xrpc.close()
      await this.ctx.database.close()
    })()
    return this.closing
  }
}
