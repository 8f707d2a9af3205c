/**
 * How every dbops process reaches Temporal: address, namespace, optional (m)TLS and the data
 * converter (payload encryption when codec keys are configured). The client (CLI, start-up,
 * health check) and the worker build their connections here, so they always agree.
 */
import { readFileSync } from 'node:fs';

import { Client, Connection, type ConnectionOptions, type TLSConfig } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { NativeConnection, type NativeConnectionOptions } from '@temporalio/worker';

import { AesGcmPayloadCodec } from './codec/aes-gcm-codec';
import { ConfigError, type TemporalConfig, type TemporalTlsConfig } from './config';

/** Options for `Connection.connect` (the client). */
export function clientConnectionOptions(temporal: TemporalConfig): ConnectionOptions {
  return { address: temporal.address, ...tlsOption(temporal) };
}

/** Options for `NativeConnection.connect` (the worker). */
export function workerConnectionOptions(temporal: TemporalConfig): NativeConnectionOptions {
  return { address: temporal.address, ...tlsOption(temporal) };
}

/**
 * For the client and `Worker.create`: payloads encrypted with the configured keys, failure messages
 * moved into encrypted payloads too; undefined (the SDK default) without codec keys.
 */
export function dataConverter(temporal: TemporalConfig): DataConverter | undefined {
  if (temporal.codecKeys === undefined) return undefined;
  return {
    payloadCodecs: [new AesGcmPayloadCodec(temporal.codecKeys)],
    failureConverterPath: require.resolve('./codec/failure-converter'),
  };
}

/** A client of the configured namespace on `connection`, with the configured data converter. */
export function createClient(connection: Connection, temporal: TemporalConfig): Client {
  return new Client({ connection, namespace: temporal.namespace, dataConverter: dataConverter(temporal) });
}

/** Connects a client (`extra`: e.g. a connect timeout); close it with `connection.close()`. */
export async function connectClient(
  temporal: TemporalConfig,
  extra: Omit<ConnectionOptions, 'address' | 'tls'> = {},
): Promise<{ connection: Connection; client: Client }> {
  const connection = await Connection.connect({ ...clientConnectionOptions(temporal), ...extra });
  return { connection, client: createClient(connection, temporal) };
}

/** The worker's connection. */
export function connectWorker(temporal: TemporalConfig): Promise<NativeConnection> {
  return NativeConnection.connect(workerConnectionOptions(temporal));
}

/** The certificate files are read at each connect, so renewed certificates apply at the next start. */
function tlsOption(temporal: TemporalConfig): { tls?: TLSConfig } {
  return temporal.tls === undefined ? {} : { tls: readTls(temporal.tls) };
}

function readTls(tls: TemporalTlsConfig): TLSConfig {
  const pair = tls.clientCertPair;
  return {
    ...(pair === undefined
      ? {}
      : {
          clientCertPair: {
            crt: readPem('TEMPORAL_TLS_CERT', pair.certPath),
            key: readPem('TEMPORAL_TLS_KEY', pair.keyPath),
          },
        }),
    ...(tls.caPath === undefined ? {} : { serverRootCACertificate: readPem('TEMPORAL_TLS_CA', tls.caPath) }),
    ...(tls.serverName === undefined ? {} : { serverNameOverride: tls.serverName }),
  };
}

function readPem(variable: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new ConfigError(
      variable,
      `${file} cannot be read: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
}
