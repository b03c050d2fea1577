import type { Logger } from 'pino'

const NOTIFY_INTERVAL_MS = 20 * 60 * 1000

/**
 * Tells the relays in PDS_CRAWLERS that this PDS has new data (com.atproto.sync.requestCrawl), at most
 * once per interval per relay.
 */
export class Crawlers {
  private lastNotified = 0
  private inflight: Promise<void> | null = null

  constructor(
    private readonly hostname: string,
    private readonly crawlers: string[],
    private readonly logger: Logger,
    private readonly intervalMs = NOTIFY_INTERVAL_MS,
  ) {}

  notifyOfUpdate(): void {
    if (this.crawlers.length === 0 || this.inflight) return
    const now = Date.now()
    if (now - this.lastNotified < this.intervalMs) return
    this.lastNotified = now
    this.inflight = Promise.all(this.crawlers.map((url) => this.requestCrawl(url))).then(() => {
      this.inflight = null
    })
  }

  private async requestCrawl(url: string): Promise<void> {
    try {
      const res = await fetch(`${url}/xrpc/com.atproto.sync.requestCrawl`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ hostname: this.hostname }),
        signal: AbortSignal.timeout(10_000),
      })
      if (!res.ok) this.logger.warn({ crawler: url, status: res.status }, 'requestCrawl refused')
    } catch (err) {
      this.logger.warn({ err, crawler: url }, 'requestCrawl failed')
    }
  }

  async settled(): Promise<void> {
    await this.inflight
  }
}
