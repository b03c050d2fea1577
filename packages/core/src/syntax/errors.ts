/** Thrown by the ensureValid* functions; the message says which identifier and what is wrong. */
export class InvalidSyntaxError extends Error {
  override name = 'InvalidSyntaxError'
}
