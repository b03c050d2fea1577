/**
 * The ingest and tampered-event tests of ingest.test.ts once more with verification on the main thread
 * (RELAY_VERIFY_WORKERS=0, the in-thread path); ingest.test.ts itself runs with the default worker pool.
 * Both must drop the same events with the same reasons.
 */
process.env.RELAY_VERIFY_WORKERS = '0'
await import('./ingest.test.js')
