export { startTestPostgres, type TestPostgresOptions } from './test-postgres.js'
export { findPostgresBinDir, startThrowawayCluster, THROWAWAY_SETTINGS, type ThrowawayClusterOptions, type ThrowawayPostgres } from './throwaway-postgres.js'
