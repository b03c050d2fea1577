/**
 * A lean HTTP/1.1 keep-alive client for the benchmarks' load: a fixed set of sockets to one server, one
 * request in flight per socket (no pipelining), requests waiting in FIFO order for a free socket. It writes
 * each request as one string and reads responses with a small parser (status line, Content-Length or chunked
 * bodies; other headers are kept only when asked for), which costs a fraction of what undici's Pool spends
 * per request: at several thousand requests per second on a 2-core machine the load generator's own CPU
 * would otherwise compete with the server it measures.
 */
import { connect, type Socket } from 'node:net'

export interface LeanResponse {
  statusCode: number
  body: string
}

interface Pending {
  head: string
  body: string | undefined
  resolve: (res: LeanResponse) => void
  reject: (err: Error) => void
}

const CRLF2 = Buffer.from('\r\n\r\n')

class Connection {
  private socket: Socket | null = null
  private buf: Buffer = Buffer.alloc(0)
  private current: Pending | null = null
  /** header end offset, content length (-1: chunked) once the head of the current response is parsed */
  private headEnd = -1
  private length = 0
  private status = 0
  private close = false

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly onFree: (c: Connection) => void,
  ) {}

  send(p: Pending): void {
    this.current = p
    if (!this.socket || this.socket.destroyed) this.open()
    this.socket!.write(p.body === undefined ? p.head : p.head + p.body)
  }

  private open(): void {
    const socket = connect({ host: this.host, port: this.port, noDelay: true })
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    const fail = (err: Error) => {
      // a socket this connection already let go (closed after a `connection: close` response) has no request
      if (this.socket !== socket) return
      this.socket = null
      this.buf = Buffer.alloc(0)
      this.headEnd = -1
      const p = this.current
      this.current = null
      if (p) {
        p.reject(err)
        this.onFree(this)
      }
    }
    socket.on('error', fail)
    socket.on('close', () => fail(new Error('connection closed')))
    this.socket = socket
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    for (;;) {
      if (!this.current) return
      if (this.headEnd < 0) {
        const end = this.buf.indexOf(CRLF2)
        if (end < 0) return
        const head = this.buf.toString('latin1', 0, end)
        this.status = Number(head.slice(9, 12))
        const lower = head.toLowerCase()
        const cl = lower.indexOf('\r\ncontent-length:')
        if (cl >= 0) {
          const eol = lower.indexOf('\r\n', cl + 2)
          this.length = parseInt(lower.slice(cl + 17, eol < 0 ? undefined : eol), 10)
        } else if (lower.includes('\r\ntransfer-encoding: chunked')) {
          this.length = -1
        } else {
          this.length = 0
        }
        this.close = lower.includes('\r\nconnection: close')
        this.headEnd = end + 4
      }
      let body: string | null = null
      let consumed = 0
      if (this.length >= 0) {
        if (this.buf.length < this.headEnd + this.length) return
        body = this.buf.toString('utf8', this.headEnd, this.headEnd + this.length)
        consumed = this.headEnd + this.length
      } else {
        // chunked: <hex size>\r\n<data>\r\n ... 0\r\n\r\n
        const parts: Buffer[] = []
        let pos = this.headEnd
        for (;;) {
          const eol = this.buf.indexOf('\r\n', pos)
          if (eol < 0) return
          const size = parseInt(this.buf.toString('latin1', pos, eol), 16)
          if (size === 0) {
            const end = this.buf.indexOf(CRLF2, eol)
            if (end < 0) return
            consumed = end + 4
            break
          }
          if (this.buf.length < eol + 2 + size + 2) return
          parts.push(this.buf.subarray(eol + 2, eol + 2 + size))
          pos = eol + 2 + size + 2
        }
        body = Buffer.concat(parts).toString('utf8')
      }
      this.buf = consumed === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(consumed)
      this.headEnd = -1
      const p = this.current
      this.current = null
      if (this.close) {
        this.socket?.destroy()
        this.socket = null
      }
      p.resolve({ statusCode: this.status, body })
      this.onFree(this)
    }
  }

  destroy(): void {
    this.socket?.destroy()
    this.socket = null
  }
}

export class LeanPool {
  private readonly free: Connection[] = []
  private readonly all: Connection[] = []
  private readonly queue: Pending[] = []
  private readonly host: string
  private readonly port: number
  private readonly hostHeader: string

  constructor(url: string, opts: { connections: number }) {
    const u = new URL(url)
    this.host = u.hostname
    this.port = Number(u.port || 80)
    this.hostHeader = u.host
    for (let i = 0; i < opts.connections; i++) {
      const c = new Connection(this.host, this.port, (conn) => this.release(conn))
      this.all.push(c)
      this.free.push(c)
    }
  }

  private release(conn: Connection): void {
    const next = this.queue.shift()
    if (next) conn.send(next)
    else this.free.push(conn)
  }

  request(opts: { method: string; path: string; headers?: Record<string, string>; body?: string }): Promise<LeanResponse> {
    return new Promise((resolve, reject) => {
      let head = `${opts.method} ${opts.path} HTTP/1.1\r\nhost: ${this.hostHeader}\r\n`
      for (const [k, v] of Object.entries(opts.headers ?? {})) head += `${k}: ${v}\r\n`
      if (opts.body !== undefined) head += `content-length: ${Buffer.byteLength(opts.body)}\r\n`
      head += '\r\n'
      const p: Pending = { head, body: opts.body, resolve, reject }
      const conn = this.free.pop()
      if (conn) conn.send(p)
      else this.queue.push(p)
    })
  }

  close(): void {
    for (const c of this.all) c.destroy()
  }
}
