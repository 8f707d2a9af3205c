import type { DatabaseConnector } from './connect';

export interface PingResult {
  database: string;
  serverVersion: string;
  /** Installed pgvector version, or null when the extension is not installed in this database. */
  pgvectorVersion: string | null;
  roundTripMs: number;
}

/** Through the connector, so the ping takes the same way as every other activity (TLS and IAM on aws). */
export function createPingActivities(connector: DatabaseConnector) {
  return {
    /** Connects, asks the server who it is and whether pgvector is installed. */
    async pingDatabase(): Promise<PingResult> {
      return connector.withPrimary(async (client) => {
        const started = performance.now();
        const { rows } = await client.query<{ database: string; version: string; vector: string | null }>(
          `SELECT current_database() AS database,
                  current_setting('server_version') AS version,
                  (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS vector`,
        );
        const row = rows[0]!;
        return {
          database: row.database,
          serverVersion: row.version,
          pgvectorVersion: row.vector,
          roundTripMs: Math.round((performance.now() - started) * 10) / 10,
        };
      });
    },
  };
}
