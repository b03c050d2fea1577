/**
 * A minimal WebSocket client for the relay bench's consumers (bench/lib/relay-consumers.ts, instrument `raw`):
 * a TCP socket reading into one buffer of its own (net's `onread`), the HTTP upgrade written by hand, and a
 * reader of the server's frames that hands each binary message to `onMessage` as a view into that buffer
 * (copied only when a message spans two reads).
 * No UTF-8 checks, no per-message events or allocations, no extension: what a consumer that is not itself the
 * limit needs. Pings are answered (masked pong); a close frame ends the connection.
 *
 * It is an instrument, not a general client: it trusts the server to send valid frames (server frames are
 * unmasked; fragmented messages are reassembled). The consumers check what it hands out (every consumer reads
 * the seq of every frame and checks it is 1, 2, 3...), so a reading mistake shows as a wrong seq or count.
 */
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'

export interface RawWsOptions {
  /** http(s)://host:port/path or ws://... (only plain TCP) */
  url: string
  onOpen: () => void
  /** a complete binary (or text) message; `data` is only valid during the call */
  onMessage: (data: Uint8Array) => void
  onClose: (code: number, reason: string) => void
  onError: (err: Error) => void
}

const EMPTY = new Uint8Array(0)

export class RawWs {
  private readonly sock: Socket
  private upgraded = false
  private head: Buffer = Buffer.alloc(0)
  /** bytes of an incomplete frame carried over to the next chunk */
  private carry: Buffer | null = null
  /** fragments of a message not finished yet */
  private fragments: Buffer[] = []
  private closed = false

  constructor(private readonly o: RawWsOptions) {
    const u = new URL(o.url.replace(/^ws/, 'http'))
    const key = randomBytes(16).toString('base64')
    // reads land in one buffer of this connection's (no allocation per read); a frame cut by the end of a read
    // is carried over as a copy
    const readBuffer = Buffer.allocUnsafe(256 * 1024)
    this.sock = connect({
      host: u.hostname,
      port: Number(u.port || 80),
      onread: {
        buffer: readBuffer,
        callback: (n: number, buf: Uint8Array) => {
          this.onData((buf as Buffer).subarray(0, n))
          return !this.closed
        },
      },
    })
    this.sock.setNoDelay(true)
    this.sock.on('connect', () => {
      this.sock.write(
        `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      )
    })
    this.sock.on('error', (err) => this.o.onError(err))
    this.sock.on('close', () => this.finish(1006, 'connection closed'))
  }

  /** Closes the TCP connection at once. */
  terminate(): void {
    this.closed = true
    this.sock.destroy()
  }

  private finish(code: number, reason: string): void {
    if (this.closed) return
    this.closed = true
    this.sock.destroy()
    this.o.onClose(code, reason)
  }

  private onData(chunk: Buffer): void {
    if (!this.upgraded) {
      this.head = Buffer.concat([this.head, chunk])
      const end = this.head.indexOf('\r\n\r\n')
      if (end < 0) return
      const status = this.head.subarray(0, this.head.indexOf('\r\n')).toString('latin1')
      if (!/^HTTP\/1\.1 101 /.test(status)) {
        this.o.onError(new Error(`upgrade refused: ${status}`))
        this.finish(1006, status)
        return
      }
      this.upgraded = true
      const rest = this.head.subarray(end + 4)
      this.head = Buffer.alloc(0)
      this.o.onOpen()
      if (rest.length === 0) return
      chunk = rest
    }
    let b = chunk
    if (this.carry) {
      b = Buffer.concat([this.carry, chunk])
      this.carry = null
    }
    let p = 0
    const n = b.length
    while (p < n && !this.closed) {
      if (n - p < 2) break
      const b0 = b[p]!
      const b1 = b[p + 1]!
      let len = b1 & 0x7f
      let at = p + 2
      if (len === 126) {
        if (n - p < 4) break
        len = (b[p + 2]! << 8) | b[p + 3]!
        at = p + 4
      } else if (len === 127) {
        if (n - p < 10) break
        len = b.readUInt32BE(p + 2) * 2 ** 32 + b.readUInt32BE(p + 6)
        at = p + 10
      }
      if (b1 & 0x80) at += 4 // (a server never masks; skip a mask anyway)
      if (n - at < len) break
      const payload = b.subarray(at, at + len)
      p = at + len
      this.frame(b0 & 0x80 ? true : false, b0 & 0x0f, payload)
    }
    if (p < n && !this.closed) this.carry = Buffer.from(b.subarray(p)) // (own copy: the chunk may be reused)
  }

  private frame(fin: boolean, opcode: number, payload: Buffer): void {
    switch (opcode) {
      case 0x0: // continuation
      case 0x1:
      case 0x2:
        if (!fin) {
          this.fragments.push(Buffer.from(payload))
          return
        }
        if (this.fragments.length > 0) {
          const whole = Buffer.concat([...this.fragments, payload])
          this.fragments = []
          this.o.onMessage(whole)
        } else this.o.onMessage(payload)
        return
      case 0x8: {
        const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005
        this.finish(code, payload.length > 2 ? payload.subarray(2).toString('utf8') : '')
        return
      }
      case 0x9:
        this.send(0xa, payload)
        return
      default:
        return // pong, reserved
    }
  }

  /** A control frame to the server (client frames are masked). */
  private send(opcode: number, payload: Uint8Array = EMPTY): void {
    if (payload.length > 125) return
    const mask = randomBytes(4)
    const out = Buffer.alloc(6 + payload.length)
    out[0] = 0x80 | opcode
    out[1] = 0x80 | payload.length
    mask.copy(out, 2)
    for (let i = 0; i < payload.length; i++) out[6 + i] = payload[i]! ^ mask[i & 3]!
    this.sock.write(out)
  }
}
