import type { Logger } from 'pino'
import type { PdsConfig } from './config.js'

export interface MailMessage {
  to: string
  subject: string
  text: string
}

/** Outgoing mail: account tokens (email confirmation, password reset, deletion, PLC operations). */
export interface Mailer {
  send(msg: MailMessage): Promise<void>
  /** The last message sent to an address (kept in memory, the newest few hundred addresses). */
  lastMailTo(address: string): MailMessage | undefined
  close(): void
}

const REMEMBERED_ADDRESSES = 500

abstract class RememberingMailer implements Mailer {
  private readonly last = new Map<string, MailMessage>()

  protected remember(msg: MailMessage): void {
    const key = msg.to.toLowerCase()
    this.last.delete(key)
    this.last.set(key, msg)
    if (this.last.size > REMEMBERED_ADDRESSES) this.last.delete(this.last.keys().next().value!)
  }

  lastMailTo(address: string): MailMessage | undefined {
    return this.last.get(address.toLowerCase())
  }

  abstract send(msg: MailMessage): Promise<void>
  close(): void {}
}

/**
 * Without SMTP: every message is written to the log at info level, so a self-hoster can read the token
 * and finish the flow; the last message per address is also kept in memory (tests read it).
 */
export class LogMailer extends RememberingMailer {
  constructor(private readonly logger: Logger) {
    super()
  }

  async send(msg: MailMessage): Promise<void> {
    this.remember(msg)
    this.logger.info({ to: msg.to, subject: msg.subject, text: msg.text }, 'email (no SMTP configured, logged instead)')
  }
}

/** SMTP through nodemailer (PDS_EMAIL_SMTP_URL, PDS_EMAIL_FROM_ADDRESS). */
export class SmtpMailer extends RememberingMailer {
  private transport: Promise<{ sendMail(m: object): Promise<unknown>; close(): void }> | null = null

  constructor(
    private readonly smtpUrl: string,
    private readonly from: string,
    private readonly logger: Logger,
  ) {
    super()
  }

  private getTransport() {
    this.transport ??= import('nodemailer').then(({ createTransport }) => createTransport(this.smtpUrl))
    return this.transport
  }

  async send(msg: MailMessage): Promise<void> {
    this.remember(msg)
    const transport = await this.getTransport()
    await transport.sendMail({ from: this.from, to: msg.to, subject: msg.subject, text: msg.text })
    this.logger.info({ to: msg.to, subject: msg.subject }, 'email sent')
  }

  override close(): void {
    void this.transport?.then((t) => t.close()).catch(() => undefined)
  }
}

export function createMailer(cfg: PdsConfig, logger: Logger): Mailer {
  return cfg.email ? new SmtpMailer(cfg.email.smtpUrl, cfg.email.fromAddress, logger) : new LogMailer(logger)
}

/** The messages the PDS sends. */
export const mailTemplates = {
  confirmEmail: (token: string): Omit<MailMessage, 'to'> => ({
    subject: 'Confirm your email address',
    text: `Confirm this email address for your account with this code:\n\n  ${token}\n\nThe code is valid for 15 minutes.`,
  }),
  updateEmail: (token: string): Omit<MailMessage, 'to'> => ({
    subject: 'Email address change requested',
    text: `To change the email address of your account, enter this code:\n\n  ${token}\n\nThe code is valid for 15 minutes. If you did not ask for this, ignore this message.`,
  }),
  resetPassword: (handle: string, token: string): Omit<MailMessage, 'to'> => ({
    subject: 'Password reset requested',
    text: `A password reset was requested for ${handle}. Reset code:\n\n  ${token}\n\nThe code is valid for 15 minutes. If you did not ask for this, ignore this message.`,
  }),
  deleteAccount: (token: string): Omit<MailMessage, 'to'> => ({
    subject: 'Account deletion requested',
    text: `To delete your account permanently, enter this code:\n\n  ${token}\n\nThe code is valid for 15 minutes. If you did not ask for this, change your password now.`,
  }),
  plcOperation: (token: string): Omit<MailMessage, 'to'> => ({
    subject: 'Identity change requested',
    text: `An update of your identity (DID document) was requested. Confirmation code:\n\n  ${token}\n\nThe code is valid for 15 minutes. If you did not ask for this, change your password now.`,
  }),
}
