export * from './service-jwt.js'
export * from './replay-cache.js'
