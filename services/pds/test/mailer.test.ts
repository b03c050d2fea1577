import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { pino } from 'pino'
import { LogMailer, SmtpMailer } from '../src/mailer.js'

/** Just enough SMTP to take one message at a time (no TLS, no auth). */
function startSmtp(): Promise<{ port: number; messages: { from: string; to: string[]; data: string }[]; close(): Promise<void> }> {
  const messages: { from: string; to: string[]; data: string }[] = []
  const server = net.createServer((sock) => {
    let buf = ''
    let inData = false
    let current = { from: '', to: [] as string[], data: '' }
    sock.write('220 fake.smtp ESMTP\r\n')
    sock.on('data', (chunk) => {
      buf += chunk.toString('utf8')
      for (;;) {
        if (inData) {
          const end = buf.indexOf('\r\n.\r\n')
          if (end < 0) return
          current.data = buf.slice(0, end)
          buf = buf.slice(end + 5)
          inData = false
          messages.push(current)
          current = { from: '', to: [], data: '' }
          sock.write('250 queued\r\n')
          continue
        }
        const nl = buf.indexOf('\r\n')
        if (nl < 0) return
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 2)
        const cmd = line.slice(0, 4).toUpperCase()
        if (cmd === 'EHLO') sock.write('250-fake.smtp\r\n250 8BITMIME\r\n')
        else if (cmd === 'HELO') sock.write('250 fake.smtp\r\n')
        else if (cmd === 'MAIL') {
          current.from = line.slice(10).trim()
          sock.write('250 ok\r\n')
        } else if (cmd === 'RCPT') {
          current.to.push(line.slice(8).trim())
          sock.write('250 ok\r\n')
        } else if (cmd === 'DATA') {
          inData = true
          sock.write('354 go on\r\n')
        } else if (cmd === 'QUIT') {
          sock.end('221 bye\r\n')
          return
        } else sock.write('250 ok\r\n')
      }
    })
    sock.on('error', () => undefined)
  })
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      resolve({ port, messages, close: () => new Promise((r) => server.close(() => r())) })
    })
  })
}

describe('mailer', () => {
  let smtp: Awaited<ReturnType<typeof startSmtp>>
  beforeAll(async () => {
    smtp = await startSmtp()
  })
  afterAll(async () => {
    await smtp?.close()
  })

  it('sends through SMTP when configured (nodemailer)', async () => {
    const mailer = new SmtpMailer(`smtp://127.0.0.1:${smtp.port}`, 'pds@example.com', pino({ level: 'silent' }))
    await mailer.send({ to: 'alice@example.com', subject: 'Confirm your email address', text: 'code: ABCDE-FGHIJ' })
    mailer.close()
    expect(smtp.messages).toHaveLength(1)
    const msg = smtp.messages[0]!
    expect(msg.from).toContain('pds@example.com')
    expect(msg.to.join(' ')).toContain('alice@example.com')
    expect(msg.data).toMatch(/^Subject: Confirm your email address$/m)
    expect(msg.data).toContain('code: ABCDE-FGHIJ')
  })

  it('without SMTP, logs the message at info level and keeps the last one per address', async () => {
    const lines: string[] = []
    const logger = pino({ level: 'info' }, { write: (l: string) => lines.push(l) })
    const mailer = new LogMailer(logger)
    await mailer.send({ to: 'Bob@Example.com', subject: 'first', text: 'token AAAAA-BBBBB' })
    await mailer.send({ to: 'bob@example.com', subject: 'second', text: 'token CCCCC-DDDDD' })
    expect(mailer.lastMailTo('BOB@example.com')?.subject).toBe('second')
    expect(mailer.lastMailTo('carol@example.com')).toBeUndefined()
    const logged = lines.map((l) => JSON.parse(l) as { level: number; text?: string })
    expect(logged.map((l) => l.text)).toEqual(['token AAAAA-BBBBB', 'token CCCCC-DDDDD'])
    expect(logged.every((l) => l.level === 30)).toBe(true)
  })
})
